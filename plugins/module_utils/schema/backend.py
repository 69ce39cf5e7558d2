# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base class of schema_update's database backends (one file each: postgresql, mysql, sqlite, firebird): history table, lock, statements."""

from __future__ import annotations

import hashlib
import time

from ansible_collections.clinops.upgrade.plugins.module_utils.schema.sql import SqlSplitError, is_commit, is_transaction_control
from ansible_collections.clinops.upgrade.plugins.module_utils.database import connect, describe_error
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import (
    BASELINE_DESCRIPTION,
    HistoryRow,
    IDENTIFIER_RE,
    MigrationError,
    MigrationFailed,
)


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
