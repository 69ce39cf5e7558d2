#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: schema_update
short_description: Bring a database's schema to the release's version once, safely
version_added: 0.1.0
author:
  - clinops.upgrade contributors (@clinops)
description:
  - Applies versioned SQL migration files in order and records them in a history table (O(migrations)),
    or runs a vendor's own schema upgrade tool and judges the result from the version the database reports
    before and after (O(command)).
  - "Migration files are named C(V<version>__<description>.sql). Versions are compared block by block as numbers
    (C(6.0.10) is newer than C(6.0.9)); C(.) and C(_) both separate blocks, missing blocks count as zero. Every
    C(*.sql) file in the folder must follow the pattern; other files are ignored."
  - "A file may declare its phase in its leading comment lines: C(-- phase: pre) (safe while the old version
    still runs: expand), C(-- phase: offline) (needs the downtime; the default) or C(-- phase: post) (runs after
    the new version started: contract). The header is the run of blank and C(--) lines at the top of the file."
  - Before anything is applied the module checks everything it can - the file names, duplicate versions,
    the connection, the checksums (SHA-256, line endings normalised) of the files already applied, the target,
    downgrades, a database newer than the release, failed entries left by an earlier run, the phase order,
    and that every pending file splits into statements.
  - "Concurrent runs are serialised by a lock that dies with the connection: a PostgreSQL advisory lock
    (C(pg_try_advisory_lock), polled), MariaDB/MySQL C(GET_LOCK), an SQLite C(BEGIN EXCLUSIVE) transaction
    that holds the whole run (each migration is a savepoint in it), and on Firebird an uncommitted update of
    the one row of C(<history_table>_lock) in a transaction with a lock timeout. A run waits at most
    O(lock_timeout) seconds for it."
  - Each migration runs in its own transaction on PostgreSQL, SQLite and Firebird, and is rolled back whole
    when a statement fails. MariaDB/MySQL commit DDL implicitly; there a failed migration is recorded as failed
    and every later run refuses until O(repair).
  - "Statements are split on C(;) outside strings, quoted identifiers, comments and PostgreSQL dollar quotes.
    Firebird C(SET TERM) and MySQL C(DELIMITER) change the terminator. Procedure, function, trigger, package
    and event bodies (and Firebird C(EXECUTE BLOCK)) without a changed terminator run to the C(END) that closes
    their outermost C(BEGIN). psql meta-commands are refused. A MySQL routine whose body has no C(BEGIN) ends
    at its first C(;) (use C(DELIMITER))."
  - Transaction control statements (C(BEGIN), C(COMMIT)...) are refused in PostgreSQL and SQLite files, since
    each file already is one transaction. In Firebird files C(COMMIT) or C(COMMIT WORK) is a commit point
    (Firebird cannot use a table in the transaction that created it); a failure after a commit point is
    recorded as failed, like on MariaDB.
extends_documentation_fragment:
  - clinops.upgrade.database
  - clinops.upgrade.attributes
options:
  migrations:
    description:
      - Folder of the C(V<version>__<description>.sql) files, on the managed host.
      - Needs O(engine) V(postgresql), V(mysql), V(sqlite) or V(firebird).
      - Mutually exclusive with O(command).
    type: path
  command:
    description:
      - The vendor's schema upgrade tool, as an argument list, or a string split like a shell would split it
        (no shell runs it, so no pipes, redirections or variables). A bare program name is searched in the PATH.
      - The tool's exit code alone decides nothing. The database's version is read with O(version_query) or
        O(version_command) before and after; the task changed when it differs, and fails when O(target) is
        set and was not reached, or when the version went down.
      - With O(target) set and the database already there, the tool is not run.
      - Mutually exclusive with O(migrations); needs O(version_query) or O(version_command).
    type: raw
  version_query:
    description:
      - In O(command) mode, an SQL query whose first column of the first row is the database's version
        (no row or NULL means no version yet). It runs on the connection given by the connection options, so
        O(engine) must be V(postgresql), V(mysql), V(sqlite) or V(firebird).
    type: str
  version_command:
    description:
      - In O(command) mode, a command (argument list or string, no shell) that prints the database's version
        on its standard output (surrounding white space ignored; empty output means no version yet).
      - No database connection is opened, so O(engine) can be any value (V(files) for an embedded database).
    type: raw
  command_timeout:
    description:
      - Seconds the O(command) may run; then its whole process group is killed and the task fails with the
        version read afterwards. V(0) means no limit.
    type: int
    default: 0
  target:
    description:
      - The version to bring the database to. It must be the version of a migration file (or the baseline).
      - Unset means the newest migration file; in O(command) mode, whatever version the tool reaches.
      - A target older than the database is refused (no downgrades).
    type: str
  baseline:
    description:
      - Adopt an existing database at this version without running the files up to it. Used only when the
        history table is absent or empty; it is then recorded as a baseline entry. Otherwise it is ignored
        with a warning when it differs from the recorded baseline.
    type: str
  repair:
    description:
      - Remove the failed entries from the history (left by a failed migration on MariaDB/MySQL, or after a
        Firebird commit point), then run as usual, so that the fixed file is applied again.
      - Fix the database by hand first; the module cannot know what part of the failed file took effect.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for the lock held by another run before failing.
    type: int
    default: 60
  major_blocks:
    description:
      - How many leading blocks of a version decide whether a change is major (KSAMU's four-block versions
        carry the database scripts' version in the first three blocks, so V(3)). Only reported in RV(kind).
    type: int
    default: 1
  phase:
    description:
      - Which migrations to apply. V(all) applies every pending migration in version order.
      - V(pre), V(offline) and V(post) apply only the files of that phase; a phase refuses to run while files
        of an earlier phase up to the target are still pending (pre before offline before post).
    type: str
    choices: [all, pre, offline, post]
    default: all
  history_table:
    description:
      - The table that records the applied migrations (version, description, phase, checksum, applied_at,
        duration, success). Created when absent. A plain identifier; C(schema.table) on PostgreSQL.
    type: str
    default: clinops_schema_history
attributes:
  check_mode:
    support: full
    details:
      - Reads the history and reports RV(pending), RV(from_version), RV(to_version) and RV(kind) without taking
        the lock or writing anything. In O(command) mode the tool is not run; without O(target) no change is
        predicted.
  diff_mode:
    support: full
    details:
      - The SQL of the migrations that run (or would run).
  platform:
    platforms: posix
notes:
  - Engines V(files) and V(mssql) are refused in O(migrations) mode and with O(version_query).
  - The history table, the Firebird lock table and the lock name depend on O(history_table), so two
    applications can keep separate histories in one database.
  - Old migration files may be removed from the folder once applied; their history entries are then not
    checked. An applied entry newer than every file means the database is newer than the release and is refused.
requirements:
  - psycopg 3 (postgresql), PyMySQL (mysql), firebird-driver (firebird) on the managed host.
seealso:
  - name: Flyway schema history
    description: The design this module's history table and checksums follow.
    link: https://documentation.red-gate.com/flyway
"""

EXAMPLES = r"""
- name: Show what the release's migrations would do
  clinops.upgrade.schema_update:
    engine: postgresql
    database: pacs
    login_host: 127.0.0.1
    login_user: pacs
    login_password: "{{ vault_pacs_password }}"
    migrations: /opt/pacs/release/sql
  check_mode: true
  diff: true
  register: schema_plan

- name: Apply the online-safe part before the stop
  clinops.upgrade.schema_update:
    engine: postgresql
    database: pacs
    migrations: /opt/pacs/release/sql
    phase: pre

- name: Apply the downtime part (KSAMU versions, three blocks decide major)
  clinops.upgrade.schema_update:
    engine: mysql
    database: ksamu
    login_user: ksamu
    login_password: "{{ vault_ksamu_password }}"
    migrations: /opt/ksamu/scripts
    phase: offline
    major_blocks: 3
    lock_timeout: 300

- name: Adopt a database that was upgraded by hand up to 6.0.50
  clinops.upgrade.schema_update:
    engine: sqlite
    path: /var/lib/app/app.db
    migrations: /opt/app/sql
    baseline: 6.0.50

- name: Clear a failed MariaDB migration after fixing the database and the file
  clinops.upgrade.schema_update:
    engine: mysql
    database: ksamu
    migrations: /opt/ksamu/scripts
    repair: true

- name: Upgrade Orthanc's index with its own tool; judge by the index's schema version
  clinops.upgrade.schema_update:
    engine: sqlite
    path: /var/lib/orthanc/db-v6/index
    command: [Orthanc, /etc/orthanc/orthanc.json, --upgrade]
    version_query: SELECT value FROM GlobalProperties WHERE property = 1
    target: "6"
    command_timeout: 3600
"""

RETURN = r"""
from_version:
  description:
    - The database's version before the run - the highest version up to which every migration is applied
      (or the baseline) - or in O(command) mode the version read before. Null for a database without any.
  returned: always
  type: str
  sample: 6.0.50
to_version:
  description:
    - The version after the run (predicted in check mode), computed like RV(from_version).
  returned: always
  type: str
  sample: 6.0.52
target:
  description: The version the run aimed at (null in O(command) mode without O(target)).
  returned: always
  type: str
  sample: 6.0.52
kind:
  description:
    - V(major) when the first O(major_blocks) blocks differ between RV(from_version) and the target,
      V(minor) when only later blocks differ, V(none) when nothing up to the target is pending (in any phase).
    - A database without a version going to one is V(major).
  returned: always
  type: str
  sample: major
applied:
  description: The migrations applied by this run, in order (in O(command) mode, one entry for the tool when the version changed).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.51, description: add study index, phase: offline, file: V6.0.51__add_study_index.sql, duration_s: 0.042}]
pending:
  description: The migrations this run applies, or in check mode would apply (version, description, phase, file).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.51, description: add study index, phase: offline, file: V6.0.51__add_study_index.sql}]
remaining:
  description: The migrations up to the target that are still not applied after this run (other phases, or the failed one and those after it).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.52, description: drop old column, phase: post, file: V6.0.52__drop_old_column.sql}]
repaired:
  description: The versions whose failed entries O(repair) removed (or would remove).
  returned: always
  type: list
  elements: str
  sample: [6.0.51]
baseline:
  description: The baseline version this run recorded (or would record); null otherwise.
  returned: always
  type: str
  sample: 6.0.50
transactional:
  description:
    - Whether the engine rolls a failed migration back whole (true for PostgreSQL, SQLite, Firebird;
      false for MariaDB/MySQL). Null in O(command) mode.
  returned: always
  type: bool
  sample: true
history_table:
  description: The history table used (O(migrations) mode).
  returned: always
  type: str
  sample: clinops_schema_history
failed_migration:
  description: When a migration failed, its file, the line and text of the statement, and whether a failed entry was recorded.
  returned: failure
  type: dict
  sample: {file: V3__bad.sql, line: 4, statement: "CREAT TABLE x (id int)", recorded: false, rolled_back: true}
rc:
  description: The exit code of O(command).
  returned: when the command ran
  type: int
  sample: 0
stdout:
  description: The standard output of O(command).
  returned: when the command ran
  type: str
  sample: ''
stderr:
  description: The standard error of O(command).
  returned: when the command ran
  type: str
  sample: ''
"""

import os
import shlex
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils import versions
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError, check_connection_params, database_argument_spec, require_driver)
from ansible_collections.clinops.upgrade.plugins.module_utils.schema_update import (
    BACKENDS, MIGRATION_ENGINES, MigrationError, MigrationFailed, check_statements, level_after, make_plan,
    parse_reported_version, read_version_sql, run_tool, scan_migrations, validate_table_name)


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


def main():
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
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[('migrations', 'command'), ('version_query', 'version_command')],
        required_one_of=[('migrations', 'command')],
        supports_check_mode=True,
    )
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


if __name__ == '__main__':
    main()
