# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update's migration files and plan: the file names, checksums, the history rows and the ordering rules
(phases, baseline, target, repair, major blocks).  Pure: unit-tested as plain functions.
"""

from __future__ import annotations

import hashlib
import os
import re

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils import versions
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.sql import parse_header, split_statements


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
