# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``db_backup`` module: its option checks and whole run, for the module and for in-process callers.

``module_kwargs()`` gives the keyword arguments of ``AnsibleModule`` and ``run(module)`` is the module's whole
behaviour, ending in ``module.exit_json`` or ``module.fail_json``; ``plugins/modules/db_backup.py`` is only its
documentation and ``run(AnsibleModule(**module_kwargs()))``.  Another module can run a backup or restore inside
its own process by calling ``run`` with an ``AnsibleModule``-like object (see ``run`` for what it uses).

The package holds one file per engine (``postgresql``, ``mysql``, ``sqlite``, ``firebird``, ``files``, ``mssql``,
``command``) on the shared core: ``common`` (names, retention, manifests), ``streams`` (pipelines, checksums),
``engine`` (the base class) and ``runner`` (one run).
"""

from __future__ import annotations

import grp
import os
import pwd
import signal

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import (
    ALL_FORMATS,
    BackupError,
    backup_extension,
    render_name,
    resolve_compression,
    resolve_format,
    utc_timestamp,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.command import check_command_options, command_argument_spec
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.hostio import REMOTE_ENGINES
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.runner import Runner, elapsed
from ansible_collections.clinops.upgrade.plugins.module_utils.database import ENGINES, check_connection_params, database_argument_spec, require_driver
from ansible_collections.clinops.upgrade.plugins.module_utils.mssql import MssqlError, check_params as check_mssql_params

BACKUP_ENGINES = ENGINES + ('command',)


# ----------------------------------------------------------------------------------------------
# the module: option checks, one run, and the entry points module_kwargs() and run(module)

def parse_mode(value):
    """An octal mode from ``"0600"``, ``"600"`` or an int; raise BackupError otherwise."""
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in '01234567' for c in text):
            raise BackupError('mode %r is not an octal number such as "0600"' % value)
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise BackupError('mode %r is out of range' % value)
    return mode


def validate_options(params):
    """Everything about the input that can be checked without touching anything; returns derived settings."""
    problem = check_connection_params(params, BACKUP_ENGINES)
    if problem:
        raise BackupError(problem)
    engine = params['engine']
    check_command_options(params)
    if engine == 'mssql':
        try:
            check_mssql_params(params)
        except MssqlError as exc:
            raise BackupError(str(exc)) from None
    elif params.get('login_instance'):
        raise BackupError('login_instance applies to engine mssql only')
    state = params['state']
    if state == 'present' and not params.get('dest'):
        raise BackupError('state present needs dest (the backup folder)')
    if state == 'restored' and not (params.get('dest') or params.get('backup')):
        raise BackupError('state restored needs backup, or dest to find the newest backup in')
    if state == 'present':
        for option in ('backup', 'target_database'):
            if params.get(option):
                raise BackupError('%s applies to state restored only' % option)
    if engine == 'firebird' and not params.get('path'):
        raise BackupError('engine firebird needs path (the database file as the server sees it)')
    fmt = resolve_format(engine, params.get('format'))
    compression = resolve_compression(engine, fmt, params.get('compression'))
    jobs = params.get('jobs')
    if jobs is None or jobs < 1:
        raise BackupError('jobs must be 1 or more')
    if jobs > 1 and not (engine == 'postgresql' and fmt == 'directory'):
        raise BackupError('jobs %d needs engine postgresql with format directory (other formats are written by one process)' % jobs)
    if params.get('keep') is not None and params['keep'] < 1:
        raise BackupError('keep must be 1 or more (the backup just taken is always kept)')
    if params.get('label') is not None and not params['label'].strip():
        raise BackupError('label must not be empty')
    try:
        for option in ('dest', 'backup', 'path', 'bin_dir') + (('target_database',) if engine in ('sqlite', 'files', 'firebird') else ()):
            _paths.check_option_path(params.get(option), option)
        _paths.check_name_part(params.get('label'), 'label')
        _paths.check_name_part(params.get('name'), 'name')
    except _paths.PathEscape as exc:
        raise BackupError(str(exc)) from None
    mode = parse_mode(params.get('mode') if params.get('mode') is not None else '0600')
    if state == 'present':
        # render once now, so a bad template fails before anything is touched
        render_name(params.get('name'), engine, 'db', params.get('label'), utc_timestamp(), backup_extension(engine, fmt, compression))
    return dict(format=fmt, compression=compression, mode=mode)


def check_account(owner, group):
    for value, lookup, what in ((owner, pwd.getpwnam, 'owner'), (group, grp.getgrnam, 'group')):
        if value is None or value.isdigit():
            continue
        try:
            lookup(value)
        except KeyError:
            raise BackupError('%s %s does not exist on this host' % (what, value)) from None


def check_remote(params):
    """What a backup on a remote (Windows) host cannot do, refused before anything is touched."""
    if params['engine'] not in REMOTE_ENGINES:
        raise BackupError('engine %s is not carried out on Windows hosts (it needs Python, a pipeline or a database'
                          ' driver on the host); engines there: %s' % (params['engine'], ', '.join(REMOTE_ENGINES)))
    for option in ('owner', 'group'):
        if params.get(option):
            raise BackupError('%s does not apply on a Windows host (the backup folder\'s ACL is inherited); leave it out' % option)
    if params['engine'] == 'firebird':
        if not params.get('bin_dir'):
            raise BackupError('engine firebird on a Windows host needs bin_dir: the Firebird folder on the host that holds'
                              ' gbak.exe (such as C:/Program Files/Firebird/Firebird_3_0)')
        if (params.get('compression') or 'none') != 'none':
            raise BackupError('compression %s: on a Windows host gbak.exe writes the backup file itself, uncompressed;'
                              ' use compression none' % params['compression'])
        if params.get('verify') == 'restore':
            raise BackupError('verify restore counts the rows through a database driver where the module runs, not on the'
                              ' Windows host; use verify quick (gbak.exe restores the backup into a scratch database there)')
        return
    if params.get('login_user') or params.get('login_password') is not None:
        raise BackupError('login_password: on a Windows host sqlcmd signs in with Windows authentication (the account the'
                          ' upgrade connects as); a SQL login\'s password is not passed to the host, leave login_user and'
                          ' login_password out')


def _os_error(exc):
    if getattr(exc, 'errno', None) == 28:
        return 'no space left on device (%s)' % (exc.filename or 'the backup')
    return '%s%s' % (exc.strerror or exc, ' (%s)' % exc.filename if exc.filename else '')


def module_kwargs():
    """The keyword arguments of ``AnsibleModule(**module_kwargs())`` for db_backup (a new dict on every call)."""
    argument_spec = database_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'restored']),
        dest=dict(type='path'),
        name=dict(type='str'),
        format=dict(type='str', choices=list(ALL_FORMATS)),
        compression=dict(type='str', choices=['none', 'gzip', 'zstd']),
        jobs=dict(type='int', default=1),
        label=dict(type='str'),
        verify=dict(type='str', default='quick', choices=['none', 'quick', 'restore']),
        keep=dict(type='int'),
        mode=dict(type='raw', default='0600'),
        owner=dict(type='str'),
        group=dict(type='str'),
        backup=dict(type='path'),
        target_database=dict(type='str'),
        bin_dir=dict(type='path'),
        command=dict(type='dict', options=command_argument_spec()),
    )
    argument_spec['engine']['choices'] = list(BACKUP_ENGINES)
    return dict(argument_spec=argument_spec, supports_check_mode=True)


def run(module):
    """The whole db_backup module on ``module``; ends in ``module.exit_json`` or ``module.fail_json``.

    Uses only ``params``, ``check_mode``, ``fail_json``, ``exit_json``, ``warn``, ``run_command``,
    ``get_bin_path`` and ``tmpdir`` of ``module``.  Exit exceptions raised by ``fail_json``/``exit_json``
    pass through unchanged (scratch copies and temporary files are removed on the way).  Installs a
    SIGTERM handler for the duration of the run (so it must run in the main thread) and restores the
    previous one.
    """
    remote = getattr(getattr(module, 'backup_io', None), 'remote', False)
    try:
        settings = validate_options(module.params)
        if remote:
            check_remote(module.params)
        else:
            check_account(module.params.get('owner'), module.params.get('group'))
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    if module.params['engine'] not in ('sqlite', 'files', 'mssql', 'command'):
        require_driver(module, module.params['engine'])

    def terminated(signum, _frame):
        raise BackupError('terminated by signal %d' % signum)

    # a remote host's backup runs on the controller, inside ansible's worker: its signals stay ansible's
    previous_handler = None if remote else signal.signal(signal.SIGTERM, terminated)
    runner = Runner(module, settings)
    failure = None
    try:
        if module.params['state'] == 'present':
            runner.present()
        else:
            runner.restored()
    except BackupError as exc:
        failure = str(exc)
    except OSError as exc:
        where = module.params.get('dest') or os.path.dirname(runner.result['backup_path'] or '')
        failure = 'writing in %s failed: %s' % (where, _os_error(exc))
    finally:
        runner.cleanup()
        if not remote:
            signal.signal(signal.SIGTERM, previous_handler)
    for warning in runner.engine.warnings:
        module.warn(warning)
    runner.result['duration_s'] = elapsed(runner.started)
    if failure:
        runner.result.pop('changed', None)
        module.fail_json(msg=failure, **runner.result)
    module.exit_json(**runner.result)
