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

from ansible_collections.clinops.upgrade.plugins.module_utils import versions
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError,
    check_connection_params,
    database_argument_spec,
    require_driver,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.backend import check_statements, validate_table_name
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.command import _base_result, _text, run_command_mode
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.firebird import FirebirdBackend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.mysql import MysqlBackend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import (
    MIGRATION_ENGINES,
    MigrationError,
    MigrationFailed,
    level_after,
    make_plan,
    scan_migrations,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.postgresql import PostgresBackend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.sqlite import SqliteBackend


BACKENDS = dict((cls.engine, cls) for cls in (PostgresBackend, MysqlBackend, SqliteBackend, FirebirdBackend))


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
    no state outlives a call. Optional: ``host_run`` (command mode's programs run on a Windows host instead, see
    ``schema/command.py``).
    """
    params = module.params
    if params.get('login_instance') and params['engine'] != 'mssql':
        module.fail_json(msg='login_instance applies to engine mssql only')
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
