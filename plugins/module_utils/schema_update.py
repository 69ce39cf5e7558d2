# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schema_update module's logic: migration files, the plan, one backend per engine, and the module itself.

The module file holds only its documentation and ``main()``: ``run(AnsibleModule(**module_kwargs()))``.
Another module can run the whole of schema_update in its own process with an AnsibleModule-like object
(see :func:`run`). Nothing here talks to Ansible except through that ``module``, so the planning rules
are unit-tested as plain functions.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import time

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils import versions
from ansible_collections.clinops.upgrade.plugins.module_utils._schema_update_sql import (
    SqlSplitError, is_commit, is_transaction_control, parse_header, split_statements)
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError, check_connection_params, connect, database_argument_spec, describe_error, require_driver)

MIGRATION_ENGINES = ('postgresql', 'mysql', 'sqlite', 'firebird')
FILE_RE = re.compile(r'^V(?P<version>\d+(?:[._]\d+)*)__(?P<description>[^/\\]+)\.sql$')
IDENTIFIER_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$')
PHASE_RANK = {'pre': 0, 'offline': 1, 'post': 2, 'baseline': -1}
BASELINE_DESCRIPTION = '<< baseline >>'


class MigrationError(Exception):
    """Bad input or a refused state, found before anything is applied."""


class LockTimeout(MigrationError):
    """Another run holds the lock for longer than lock_timeout."""


class MigrationFailed(Exception):
    """A statement of a migration failed; ``recorded`` tells whether a failed row was written."""

    def __init__(self, migration, statement, error, recorded=False, rolled_back=True):
        self.migration = migration
        self.statement = statement
        self.error = error
        self.recorded = recorded
        self.rolled_back = rolled_back
        sql = ' '.join(statement.sql.split())
        if len(sql) > 300:
            sql = sql[:297] + '...'
        super().__init__('%s failed at line %d: %s; statement: %s' % (migration.filename, statement.line, error, sql))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
class Migration:
    """One ``V<version>__<description>.sql`` file."""

    def __init__(self, path, version, description, text):
        self.path = path
        self.filename = os.path.basename(path)
        self.version = version
        self.description = description
        self.text = text
        self.checksum = checksum(text)
        self.phase = parse_header(text)['phase']
        self._statements = {}

    def statements(self, dialect):
        if dialect not in self._statements:
            self._statements[dialect] = split_statements(self.text, dialect)
        return self._statements[dialect]

    def summary(self):
        return dict(version=self.version.text, description=self.description, phase=self.phase, file=self.filename)


def checksum(text):
    """SHA-256 of the text with line endings as LF and no BOM: a CRLF checkout is the same file."""
    if text.startswith('\ufeff'):
        text = text[1:]
    return hashlib.sha256(text.replace('\r\n', '\n').encode('utf-8')).hexdigest()


def scan_migrations(folder):
    """The migrations in ``folder`` sorted by version; MigrationError for malformed names or duplicates.

    Every ``*.sql`` file must be a migration; hidden files and other extensions are ignored.
    """
    try:
        _paths.check_option_path(folder, 'migrations')
    except _paths.PathEscape as exc:
        raise MigrationError(str(exc)) from None
    if not os.path.isdir(folder):
        raise MigrationError('migrations folder %s does not exist or is not a folder' % folder)
    found = {}
    bad = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith('.') or not name.lower().endswith('.sql') or not os.path.isfile(path):
            continue
        match = FILE_RE.match(name)
        if not match:
            bad.append(name)
            continue
        version = versions.parse(match.group('version'))
        try:
            # a migration that is a symlink leading out of the folder is refused, never read (nor run)
            text = _paths.read_under(folder, name, label='migration').decode('utf-8')
        except _paths.PathEscape as exc:
            raise MigrationError(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise MigrationError('%s is not UTF-8 text: %s' % (name, exc)) from exc
        try:
            migration = Migration(path, version, match.group('description').replace('_', ' ').strip(), text)
        except ValueError as exc:
            raise MigrationError('%s: bad header: %s' % (name, exc)) from exc
        if version.key in found:
            raise MigrationError('two files have version %s: %s and %s' % (version, found[version.key].filename, name))
        found[version.key] = migration
    if bad:
        raise MigrationError('malformed migration file name(s): %s (expected V<version>__<description>.sql, '
                             'such as V6.0.10__add_index.sql)' % ', '.join(bad))
    return sorted(found.values(), key=lambda m: m.version)


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
class HistoryRow:
    """One row of the history table."""

    def __init__(self, version, description, checksum_, phase, success, applied_at=None, duration=None):
        self.version = versions.parse(version)
        self.description = description
        self.checksum = checksum_
        self.phase = phase
        self.success = bool(success)
        self.applied_at = applied_at
        self.duration = duration

    @property
    def is_baseline(self):
        return self.phase == 'baseline'


class Plan:
    """What a run does: computed from the files and the history, before anything is touched."""

    def __init__(self):
        self.from_version = None
        self.to_version = None
        self.target = None
        self.pending = []
        self.remaining = []
        self.repair = []
        self.baseline = None
        self.kind = 'none'
        self.warnings = []
        self.done = set()
        self.baseline_version = None

    @property
    def changes(self):
        return bool(self.pending or self.repair or self.baseline is not None)


def _level(migrations, done, baseline):
    """The highest version V such that every migration up to V is done (baseline counts as done)."""
    level = baseline
    for migration in migrations:
        if migration.version.key in done or (baseline is not None and migration.version <= baseline):
            if level is None or migration.version > level:
                level = migration.version
        else:
            break
    return level


def level_after(migrations, plan, applied_versions):
    """The database's version once ``applied_versions`` (Versions) are applied on top of ``plan``'s history."""
    return _level(migrations, plan.done | set(v.key for v in applied_versions), plan.baseline_version)


def make_plan(migrations, history, target=None, baseline=None, phase='all', repair=False, major_blocks=1):
    """Validate ``history`` against ``migrations`` and return the :class:`Plan`; MigrationError when refused."""
    plan = Plan()
    by_version = dict((m.version.key, m) for m in migrations)
    newest = migrations[-1].version if migrations else None

    failed = [row for row in history if not row.success]
    if failed and not repair:
        raise MigrationError(
            'the history has failed migration(s) %s: the engine could not roll them back, so the database may '
            'hold part of them. Fix the database and the file, then run again with repair=true' % ', '.join(
                '%s (%s)' % (row.version, row.description) for row in failed))
    plan.repair = [row.version.text for row in failed]
    applied = [row for row in history if row.success]

    baseline_rows = [row for row in applied if row.is_baseline]
    baseline_version = baseline_rows[0].version if baseline_rows else None
    if baseline is not None:
        baseline = versions.parse(baseline)
        if not applied:
            baseline_version = baseline
            plan.baseline = baseline.text
        elif baseline_version is None or baseline_version != baseline:
            plan.warnings.append('baseline %s is ignored: the history already has %d entries' % (baseline, len(applied)))

    mismatched = []
    for row in applied:
        migration = by_version.get(row.version.key)
        if row.is_baseline or migration is None:
            continue
        if row.checksum and row.checksum != migration.checksum:
            mismatched.append(migration.filename)
    if mismatched:
        raise MigrationError('applied migration(s) changed since they were applied (checksum differs): %s. '
                             'Restore the applied files; put changes in a new migration' % ', '.join(mismatched))

    highest = max([row.version for row in applied] + ([baseline_version] if baseline_version is not None else []),
                  default=None)
    if highest is not None and (newest is None or highest > newest):
        raise MigrationError('the database is at version %s, newer than this release (newest migration: %s): '
                             'refusing to run an older release against it' % (highest, newest or 'none'))

    if target is not None:
        target = versions.parse(target)
        if target.key not in by_version and not (baseline_version is not None and target == baseline_version):
            raise MigrationError('target %s has no migration file (newest: %s)' % (target, newest or 'none'))
        if highest is not None and target < highest:
            raise MigrationError('the database is at version %s; target %s is older: downgrades are refused' % (
                highest, target))
    else:
        target = newest
    plan.target = target

    done = set(row.version.key for row in applied)
    plan.done, plan.baseline_version = done, baseline_version
    plan.from_version = _level(migrations, done, baseline_version)
    todo = [m for m in migrations
            if m.version.key not in done and (baseline_version is None or m.version > baseline_version)
            and target is not None and m.version <= target]

    for migration in todo:
        rank = PHASE_RANK[migration.phase]
        later = [row for row in applied if row.version > migration.version and not row.is_baseline
                 and PHASE_RANK.get(row.phase or 'offline', 1) >= rank]
        if later:
            raise MigrationError('%s was never applied but the database already has %s: out-of-order migrations '
                                 'are refused' % (migration.filename, later[0].version))

    if phase == 'all':
        plan.pending = todo
    else:
        earlier = [m for m in todo if PHASE_RANK[m.phase] < PHASE_RANK[phase]]
        if earlier:
            raise MigrationError('phase %s needs the earlier phase(s) applied first: %s still pending' % (
                phase, ', '.join('%s (%s)' % (m.filename, m.phase) for m in earlier)))
        plan.pending = [m for m in todo if m.phase == phase]
    plan.remaining = [m for m in todo if m not in plan.pending]
    plan.to_version = _level(migrations, done | set(m.version.key for m in plan.pending), baseline_version)
    plan.kind = versions.change_kind(plan.from_version, target, major_blocks) if todo else 'none'
    return plan


# ---------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------
class Backend:
    """One engine: history table, lock and the way a migration is applied."""

    engine = None
    transactional = True
    placeholder = '%s'

    def __init__(self, params, table, lock_timeout):
        self.params = params
        self.table = table
        self.lock_timeout = lock_timeout
        self.conn = None
        self.locked = False

    # connection -------------------------------------------------------------------------------
    def open(self):
        self.conn = connect(self.params)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
            self.conn = None

    def query(self, sql, args=()):
        cur = self.conn.cursor()
        try:
            if args:
                cur.execute(sql, args)
            else:
                cur.execute(sql)
            return cur.fetchall()
        finally:
            cur.close()

    def execute(self, sql, args=None):
        cur = self.conn.cursor()
        try:
            if args is None:
                cur.execute(sql)
            else:
                cur.execute(sql, args)
        finally:
            cur.close()

    # history ----------------------------------------------------------------------------------
    columns_sql = ('version VARCHAR(50) NOT NULL PRIMARY KEY, description VARCHAR(200) NOT NULL, phase VARCHAR(10), '
                   'checksum CHAR(64), applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, '
                   'duration DOUBLE PRECISION, success BOOLEAN NOT NULL')

    def history_exists(self):
        raise NotImplementedError

    def create_history(self):
        self.execute('CREATE TABLE %s (%s)' % (self.table, self.columns_sql))

    def read_history(self, exists):
        if not exists:
            self.end_read()
            return []
        rows = self.query('SELECT version, description, checksum, phase, success, applied_at, duration FROM %s'
                          % self.table)
        self.end_read()
        return [HistoryRow(r[0], r[1], (r[2] or '').strip() or None, (r[3] or '').strip() or None, r[4], r[5], r[6])
                for r in rows]

    def end_read(self):
        """Finish the read transaction (engines that hold the lock in it keep it)."""
        self.conn.commit()

    def insert_row(self, version, description, checksum_, phase, duration, success):
        self.execute('INSERT INTO %s (version, description, checksum, phase, duration, success) VALUES (%s)' % (
            self.table, ', '.join([self.placeholder] * 6)),
            (version, description[:200], checksum_, phase, duration, bool(success)))

    # the run ----------------------------------------------------------------------------------
    def prepare(self, plan, exists):
        """Create the history table, clear failed rows, write the baseline: one committed step."""
        if not exists:
            self.create_history()
            self.commit()
        for version in plan.repair:
            self.execute('DELETE FROM %s WHERE version = %s AND success = %s' % (
                self.table, self.placeholder, self.placeholder), (version, False))
        if plan.baseline is not None:
            self.insert_row(plan.baseline, BASELINE_DESCRIPTION, None, 'baseline', 0.0, True)
        self.commit()

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()

    def run_statement(self, statement):
        self.execute(statement.sql)

    def apply(self, migration, dialect):
        """Run one migration and record it; MigrationFailed names the file and the statement."""
        started = time.monotonic()
        current = None
        try:
            for current in migration.statements(dialect):
                self.run_statement(current)
            duration = time.monotonic() - started
            self.insert_row(migration.version.text, migration.description, migration.checksum, migration.phase,
                            duration, True)
            self.commit()
            return duration
        except Exception as exc:  # pylint: disable=broad-except
            self.rollback()
            raise self.failed(migration, current, exc, time.monotonic() - started) from exc

    def failed(self, migration, statement, exc, duration):
        return MigrationFailed(migration, statement, describe_error(exc))

    def finish(self):
        """End the run: release the lock (closing the connection would release it too)."""
        self.unlock()

    def lock(self):
        raise NotImplementedError

    def unlock(self):
        self.locked = False

    def lock_key(self):
        name = '%s:%s:%s' % (self.engine, self.params.get('database') or self.params.get('path'), self.table)
        return hashlib.sha256(name.encode('utf-8')).hexdigest()


class PostgresBackend(Backend):
    engine = 'postgresql'

    def history_exists(self):
        return self.query('SELECT to_regclass(%s) IS NOT NULL', (self.table,))[0][0]

    def lock(self):
        key = int(self.lock_key()[:15], 16)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            got = self.query('SELECT pg_try_advisory_lock(%s)', (key,))[0][0]
            self.conn.commit()
            if got:
                self.locked = True
                return
            if time.monotonic() >= deadline:
                raise LockTimeout('another schema update holds the lock on this database (PostgreSQL advisory lock %d) '
                                  'for longer than lock_timeout (%ss)' % (key, self.lock_timeout))
            time.sleep(0.1)

    def unlock(self):
        if self.locked:
            self.query('SELECT pg_advisory_unlock(%s)', (int(self.lock_key()[:15], 16),))
            self.conn.commit()
        self.locked = False


class MysqlBackend(Backend):
    engine = 'mysql'
    transactional = False
    columns_sql = Backend.columns_sql.replace('DOUBLE PRECISION', 'DOUBLE')

    def history_exists(self):
        return self.query('SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() '
                          'AND table_name = %s', (self.table,))[0][0] > 0

    def create_history(self):
        self.execute('CREATE TABLE %s (%s) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' % (self.table, self.columns_sql))

    def lock_name(self):
        return 'clinops_schema_update_' + self.lock_key()[:40]

    def lock(self):
        got = self.query('SELECT GET_LOCK(%s, %s)', (self.lock_name(), self.lock_timeout))[0][0]
        if got != 1:
            raise LockTimeout('another schema update holds the lock on this database (GET_LOCK %s) for longer than '
                              'lock_timeout (%ss)' % (self.lock_name(), self.lock_timeout))
        self.locked = True

    def unlock(self):
        if self.locked:
            self.query('SELECT RELEASE_LOCK(%s)', (self.lock_name(),))
        self.locked = False

    def failed(self, migration, statement, exc, duration):
        # DDL committed itself: record the failure so that later runs stop until repair.
        self.insert_row(migration.version.text, migration.description, migration.checksum, migration.phase,
                        duration, False)
        self.commit()
        return MigrationFailed(migration, statement, describe_error(exc), recorded=True, rolled_back=False)


class SqliteBackend(Backend):
    """The whole run is one BEGIN EXCLUSIVE transaction (the lock); each migration is a SAVEPOINT in it.

    A failed migration is rolled back to its savepoint and the earlier ones are committed.
    """

    engine = 'sqlite'
    placeholder = '?'

    def open(self):
        self.conn = connect(self.params, autocommit=True)

    def history_exists(self):
        return self.query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,))[0][0] > 0

    def end_read(self):
        pass

    def lock(self):
        self.execute('PRAGMA busy_timeout = %d' % int(self.lock_timeout * 1000))
        try:
            self.execute('BEGIN EXCLUSIVE')
        except Exception as exc:  # pylint: disable=broad-except
            if 'locked' in str(exc) or 'busy' in str(exc):
                raise LockTimeout('another connection holds the SQLite database %s locked for longer than lock_timeout '
                                  '(%ss)' % (self.params['path'], self.lock_timeout)) from exc
            raise
        self.locked = True

    def commit(self):
        pass

    def prepare(self, plan, exists):
        self.execute('SAVEPOINT clinops_prepare')
        super().prepare(plan, exists)
        self.execute('RELEASE clinops_prepare')

    def apply(self, migration, dialect):
        self.execute('SAVEPOINT clinops_migration')
        try:
            return super().apply(migration, dialect)
        finally:
            self.execute('RELEASE clinops_migration')

    def rollback(self):
        self.execute('ROLLBACK TO clinops_migration')

    def unlock(self):
        if self.locked and self.conn.in_transaction:
            self.execute('COMMIT')
        self.locked = False


class FirebirdBackend(Backend):
    """Each migration in one transaction; ``COMMIT [WORK]`` in a file is a commit point.

    Firebird cannot use a table in the transaction that created it, so scripts commit between DDL and
    DML; a failure after a commit point cannot be rolled back whole and is recorded as failed.
    The lock is an uncommitted UPDATE of the one row of ``<history_table>_lock`` in a second transaction
    that waits at most lock_timeout; the server rolls it back when the connection dies.
    """

    engine = 'firebird'
    placeholder = '?'

    def __init__(self, *args):
        super().__init__(*args)
        self.lock_tm = None
        self.committed_part = False

    def lock_table(self):
        return self.table + '_lock'

    def relation_exists(self, name):
        rows = self.query('SELECT COUNT(*) FROM rdb$relations WHERE rdb$relation_name = ?', (name.upper(),))
        return rows[0][0] > 0

    def history_exists(self):
        return self.relation_exists(self.table)

    def commit(self):
        if self.conn.main_transaction.is_active():
            self.conn.commit()

    def rollback(self):
        if self.conn.main_transaction.is_active():
            self.conn.rollback()

    def end_read(self):
        self.commit()

    def lock(self):
        # pylint: disable=import-outside-toplevel
        from firebird.driver import DefaultAction, Isolation, tpb
        if not self.relation_exists(self.lock_table()):
            try:
                self.execute('CREATE TABLE %s (id INTEGER NOT NULL PRIMARY KEY, locked_at TIMESTAMP)' % self.lock_table())
                self.commit()
            except Exception:  # pylint: disable=broad-except
                self.rollback()  # another run created it meanwhile
        if not self.query('SELECT COUNT(*) FROM %s WHERE id = 1' % self.lock_table())[0][0]:
            try:
                self.execute('INSERT INTO %s (id) VALUES (1)' % self.lock_table())
                self.commit()
            except Exception:  # pylint: disable=broad-except
                self.rollback()
        self.commit()
        self.lock_tm = self.conn.transaction_manager(
            tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=max(0, int(self.lock_timeout))),
            DefaultAction.ROLLBACK)
        self.lock_tm.begin()
        cur = self.lock_tm.cursor()
        try:
            cur.execute('UPDATE %s SET locked_at = CURRENT_TIMESTAMP WHERE id = 1' % self.lock_table())
        except Exception as exc:  # pylint: disable=broad-except
            self.lock_tm.rollback()
            self.lock_tm = None
            raise LockTimeout('another schema update holds the lock on this database (a row of %s) for longer than '
                              'lock_timeout (%ss): %s' % (self.lock_table(), self.lock_timeout, describe_error(exc))) from exc
        finally:
            cur.close()
        self.locked = True

    def unlock(self):
        if self.lock_tm is not None:
            self.lock_tm.rollback()
            self.lock_tm.close()
            self.lock_tm = None
        self.locked = False

    def apply(self, migration, dialect):
        self.committed_part = False
        return super().apply(migration, dialect)

    def run_statement(self, statement):
        if is_commit(statement):
            self.commit()
            self.committed_part = True
        else:
            self.execute(statement.sql)

    def failed(self, migration, statement, exc, duration):
        if not self.committed_part:
            return MigrationFailed(migration, statement, describe_error(exc))
        self.insert_row(migration.version.text, migration.description, migration.checksum, migration.phase,
                        duration, False)
        self.commit()
        return MigrationFailed(migration, statement, describe_error(exc), recorded=True, rolled_back=False)


BACKENDS = dict((cls.engine, cls) for cls in (PostgresBackend, MysqlBackend, SqliteBackend, FirebirdBackend))


def check_statements(migrations, engine):
    """Split the files that will run, before anything runs; MigrationError names the file and line."""
    for migration in migrations:
        try:
            statements = migration.statements(engine)
        except SqlSplitError as exc:
            raise MigrationError('%s: %s' % (migration.filename, exc)) from exc
        if not statements:
            raise MigrationError('%s has no SQL statement' % migration.filename)
        for statement in statements:
            if engine == 'firebird' and is_commit(statement):
                continue
            if engine != 'mysql' and is_transaction_control(statement):
                raise MigrationError(
                    '%s line %d: %s: each migration already runs in its own transaction; remove the transaction '
                    'control statements' % (migration.filename, statement.line, statement.sql.split()[0]))


def validate_table_name(name, engine):
    if not IDENTIFIER_RE.match(name):
        return 'history_table %r is not a plain SQL identifier (letters, digits, _; optionally schema.table)' % name
    if '.' in name and engine != 'postgresql':
        return 'history_table %r: a schema-qualified name is only supported on postgresql' % name
    if engine == 'firebird' and len(name) > 26:
        return 'history_table %r is too long for Firebird (26 characters at most, the lock table adds _lock)' % name
    return None


# ---------------------------------------------------------------------------------------------
# command mode
# ---------------------------------------------------------------------------------------------
def read_version_sql(params, query):
    """The first column of the first row of ``query`` as text, or None (no row, NULL)."""
    conn = connect(params, autocommit=params['engine'] != 'firebird')
    try:
        cur = conn.cursor()
        try:
            cur.execute(query)
            row = cur.fetchone()
        finally:
            cur.close()
        if params['engine'] == 'firebird':
            conn.commit()
    finally:
        conn.close()
    if row is None or row[0] is None:
        return None
    value = row[0]
    return value.decode('utf-8', 'replace') if isinstance(value, bytes) else str(value)


def parse_reported_version(text, source):
    """A Version from what a query or command reported; empty output means no version (None)."""
    if text is None or not str(text).strip():
        return None
    try:
        return versions.parse(str(text).strip())
    except versions.VersionError as exc:
        raise MigrationError('%s did not report a version: %s' % (source, exc)) from exc


def run_tool(argv, timeout, cwd=None):
    """Run ``argv`` (no shell); return (rc, stdout, stderr, timed_out).

    AnsibleModule.run_command has no timeout, and a vendor upgrade tool that hangs must not hang the
    play: the tool runs in its own session, and its whole process group is killed at ``timeout``.
    """
    # pylint: disable=consider-using-with
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout or None)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        timed_out = True
    return (proc.returncode, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace'), timed_out)


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------
def _text(version):
    return version.text if version is not None else None


def _argv(module, value, name):
    """An argument list from a list or a string (split like a shell, none run); the program resolved."""
    if isinstance(value, (list, tuple)):
        argv = [str(item) for item in value]
    elif isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            module.fail_json(msg='%s cannot be split into arguments: %s' % (name, exc))
    else:
        module.fail_json(msg='%s must be a list of arguments or a string' % name)
    if not argv or not argv[0]:
        module.fail_json(msg='%s is empty' % name)
    if os.sep not in argv[0]:
        argv[0] = module.get_bin_path(argv[0], required=True)
    elif not os.access(argv[0], os.X_OK):
        module.fail_json(msg='%s: %s is not an executable file' % (name, argv[0]))
    return argv


def _base_result(module):
    return dict(changed=False, from_version=None, to_version=None, target=None, kind='none', applied=[], pending=[],
                remaining=[], repaired=[], baseline=None, transactional=None,
                history_table=module.params['history_table'])


# ---------------------------------------------------------------------------------------------
def run_migrations(module):
    params = module.params
    engine = params['engine']
    result = _base_result(module)
    problem = check_connection_params(params, MIGRATION_ENGINES) or validate_table_name(params['history_table'], engine)
    if problem:
        module.fail_json(msg=problem, **result)
    for name in ('version_query', 'version_command'):
        if params[name] is not None:
            module.fail_json(msg='%s is only used with command' % name, **result)
    require_driver(module, engine)
    backend = BACKENDS[engine](params, params['history_table'], params['lock_timeout'])
    result['transactional'] = backend.transactional

    try:
        migrations = scan_migrations(params['migrations'])
        backend.open()
    except (MigrationError, DatabaseError) as exc:
        module.fail_json(msg=str(exc), **result)

    applied = []
    try:
        try:
            if not module.check_mode:
                backend.lock()
            exists = backend.history_exists()
            history = backend.read_history(exists)
            plan = make_plan(migrations, history, target=params['target'], baseline=params['baseline'],
                             phase=params['phase'], repair=params['repair'], major_blocks=params['major_blocks'])
            check_statements(plan.pending, engine)
        except MigrationError as exc:
            module.fail_json(msg=str(exc), **result)
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json(msg='cannot read the schema history of the %s database: %s' % (engine, exc), **result)

        for warning in plan.warnings:
            module.warn(warning)
        result.update(from_version=_text(plan.from_version), to_version=_text(plan.to_version),
                      target=_text(plan.target), kind=plan.kind, pending=[m.summary() for m in plan.pending],
                      remaining=[m.summary() for m in plan.remaining], repaired=plan.repair, baseline=plan.baseline,
                      changed=plan.changes)
        if module._diff and plan.changes:
            result['diff'] = dict(
                before_header='%s (history_table %s)' % (params.get('database') or params.get('path'), params['history_table']),
                after_header='%s migration(s) up to %s' % (len(plan.pending), _text(plan.target)),
                before='-- database at version %s; %d history entries\n' % (_text(plan.from_version) or 'none', len(history)),
                after=''.join('-- %s (phase %s)\n%s\n' % (m.filename, m.phase, m.text.rstrip('\n')) for m in plan.pending))
        if module.check_mode or not plan.changes:
            return result

        try:
            backend.prepare(plan, exists)
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json(msg='cannot prepare the history table %s: %s' % (params['history_table'], exc), **result)
        failure = None
        for migration in plan.pending:
            try:
                duration = backend.apply(migration, engine)
            except MigrationFailed as exc:
                failure = exc
                break
            applied.append(dict(migration.summary(), duration_s=round(duration, 6)))
    finally:
        try:
            backend.finish()
        finally:
            backend.close()

    done_versions = set(a['version'] for a in applied)
    result['applied'] = applied
    result['remaining'] = [m.summary() for m in sorted(plan.pending + plan.remaining, key=lambda m: m.version)
                           if m.version.text not in done_versions]
    if failure is None:
        return result
    result['to_version'] = _text(level_after(migrations, plan, [versions.parse(v) for v in done_versions]))
    result['changed'] = bool(applied) or failure.recorded or bool(plan.repair) or plan.baseline is not None
    result['failed_migration'] = dict(file=failure.migration.filename, line=failure.statement.line,
                                      statement=failure.statement.sql, recorded=failure.recorded,
                                      rolled_back=failure.rolled_back)
    how = ('rolled back' if failure.rolled_back else
           'NOT rolled back (the engine commits DDL); it is recorded as failed and later runs refuse until repair=true')
    module.fail_json(msg='%s. %d migration(s) applied before it; %s' % (failure, len(applied), how), **result)
    return result


# ---------------------------------------------------------------------------------------------
def read_version(module, argv):
    params = module.params
    if argv is not None:
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise MigrationError('version_command exited with %d: %s' % (rc, (err or out).strip()[-500:]))
        return parse_reported_version(out, 'version_command')
    return parse_reported_version(read_version_sql(params, params['version_query']), 'version_query')


def run_command_mode(module):
    params = module.params
    result = _base_result(module)
    result['history_table'] = None
    for name in ('baseline',):
        if params[name] is not None:
            module.fail_json(msg='%s is only used with migrations' % name, **result)
    if params['repair'] or params['phase'] != 'all':
        module.fail_json(msg='repair and phase are only used with migrations', **result)
    if (params['version_query'] is None) == (params['version_command'] is None):
        module.fail_json(msg='command needs exactly one of version_query or version_command', **result)
    version_argv = None
    if params['version_query'] is not None:
        problem = check_connection_params(params, MIGRATION_ENGINES)
        if problem:
            module.fail_json(msg='version_query: %s' % problem, **result)
        require_driver(module, params['engine'])
    else:
        version_argv = _argv(module, params['version_command'], 'version_command')
    argv = _argv(module, params['command'], 'command')
    if params['command_timeout'] < 0:
        module.fail_json(msg='command_timeout must be 0 (no limit) or positive', **result)
    target = None
    try:
        if params['target'] is not None:
            target = versions.parse(params['target'])
        before = read_version(module, version_argv)
    except (MigrationError, DatabaseError, versions.VersionError) as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg='cannot read the version before the command: %s' % exc, **result)
    result.update(from_version=_text(before), to_version=_text(before), target=_text(target))
    if target is not None:
        if before is not None and before > target:
            module.fail_json(msg='the database is at version %s; target %s is older: downgrades are refused' % (
                before, target), **result)
        if before is not None and before == target:
            return result
        result['kind'] = versions.change_kind(before, target, params['major_blocks'])
        result['pending'] = [dict(version=target.text, description='command: %s' % ' '.join(argv), phase=None, file=None)]
    if module.check_mode:
        if target is None:
            module.warn('check mode cannot predict what the command changes without target')
        result['changed'] = target is not None
        result['to_version'] = _text(target) if target is not None else _text(before)
        return result

    started = time.monotonic()
    try:
        rc, out, err, timed_out = run_tool(argv, params['command_timeout'])
    except OSError as exc:
        module.fail_json(msg='cannot run %s: %s' % (argv[0], exc), **result)
    duration = time.monotonic() - started
    result.update(rc=rc, stdout=out, stderr=err)
    try:
        after = read_version(module, version_argv)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg='the command exited with %s, but the version cannot be read afterwards: %s' % (rc, exc),
                         **result)
    result['to_version'] = _text(after)
    result['changed'] = after != before
    if result['changed']:
        result['kind'] = versions.change_kind(before, after, params['major_blocks'])
        result['applied'] = [dict(version=_text(after), description='command: %s' % ' '.join(argv), phase=None,
                                  file=None, duration_s=round(duration, 6))]
    problems = []
    if timed_out:
        problems.append('the command was killed after command_timeout (%ss)' % params['command_timeout'])
    elif rc != 0:
        problems.append('the command exited with %d' % rc)
    if before is not None and (after is None or after < before):
        problems.append('the version went down from %s to %s' % (before, _text(after)))
    if target is not None and (after is None or after != target):
        problems.append('target %s was not reached' % _text(target))
    if problems:
        tail = (err or out).strip()[-1000:]
        module.fail_json(msg='%s; the database is at version %s (it was %s)%s' % (
            '; '.join(problems), _text(after), _text(before), (': ' + tail) if tail else ''), **result)
    return result


def module_kwargs():
    """The keyword arguments of ``AnsibleModule(**module_kwargs())``: a new dict on every call."""
    argument_spec = database_argument_spec()
    argument_spec.update(
        migrations=dict(type='path'),
        command=dict(type='raw'),
        version_query=dict(type='str'),
        version_command=dict(type='raw'),
        command_timeout=dict(type='int', default=0),
        target=dict(type='str'),
        baseline=dict(type='str'),
        repair=dict(type='bool', default=False),
        lock_timeout=dict(type='int', default=60),
        major_blocks=dict(type='int', default=1),
        phase=dict(type='str', default='all', choices=['all', 'pre', 'offline', 'post']),
        history_table=dict(type='str', default='clinops_schema_history'),
    )
    return dict(
        argument_spec=argument_spec,
        mutually_exclusive=[('migrations', 'command'), ('version_query', 'version_command')],
        required_one_of=[('migrations', 'command')],
        supports_check_mode=True,
    )


def run(module):
    """The whole module: ends in ``module.exit_json(**result)`` or ``module.fail_json(msg=..., **result)``.

    ``module`` is an AnsibleModule, or an object with the same ``params``, ``check_mode``, ``_diff``,
    ``fail_json``, ``exit_json``, ``warn``, ``run_command`` and ``get_bin_path`` whose ``fail_json`` and
    ``exit_json`` raise (SystemExit or another BaseException). Nothing here catches BaseException, and
    no state outlives a call.
    """
    params = module.params
    if params['lock_timeout'] < 0:
        module.fail_json(msg='lock_timeout must be 0 or positive')
    if params['major_blocks'] < 1:
        module.fail_json(msg='major_blocks must be at least 1')
    for name in ('target', 'baseline'):
        if params[name] is not None and not versions.is_version(params[name]):
            module.fail_json(msg='%s %r is not a version (numbers separated by dots, such as 6.0.10)' % (name, params[name]))
    if params['migrations'] is not None:
        result = run_migrations(module)
    else:
        result = run_command_mode(module)
    module.exit_json(**result)


__all__ = ['MIGRATION_ENGINES', 'MigrationError', 'LockTimeout', 'MigrationFailed', 'Migration', 'HistoryRow', 'Plan',
           'scan_migrations', 'make_plan', 'level_after', 'BACKENDS', 'check_statements', 'validate_table_name', 'read_version_sql',
           'parse_reported_version', 'run_tool', 'DatabaseError', 'checksum', 'run_migrations', 'read_version',
           'run_command_mode', 'module_kwargs', 'run']
