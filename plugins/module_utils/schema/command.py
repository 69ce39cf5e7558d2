# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update's command mode: the vendor's own tool runs the migrations; the version is read by a query or a command.

Where the programs run: here (the module on a POSIX host), or on a Windows host when the module object offers
``host_run(argv, timeout, cwd=None) -> (rc, stdout, stderr, timed_out)`` (``upgrade_cutover``'s Windows host carries
it out with its ``run`` script): the vendor's tool, ``version_command`` and SQL Server's ``sqlcmd`` for
``version_query`` then run on that host, found by its own program search. The decisions (versions, target,
downgrade, idempotence) are this one code path for both.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time

from ansible_collections.clinops.upgrade.plugins.module_utils import mssql as _mssql
from ansible_collections.clinops.upgrade.plugins.module_utils import versions
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DatabaseError, check_connection_params, connect, require_driver
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import MIGRATION_ENGINES, MigrationError


# ---------------------------------------------------------------------------------------------
# command mode
# ---------------------------------------------------------------------------------------------
VERSION_QUERY_ENGINES = MIGRATION_ENGINES + ('mssql',)
VERSION_TIMEOUT = 600  # seconds a version_command run on a remote host may take (run_command has no limit here)


def host_runner(module):
    """The module's ``host_run`` (the programs run on a Windows host), or None (they run here)."""
    return getattr(module, 'host_run', None)


def read_version_sql(params, query, sqlcmd=None, runner=None):
    """The first column of the first row of ``query`` as text, or None (no row, NULL).

    SQL Server is asked through ``sqlcmd`` (the path ``sqlcmd``), with ``SET NOCOUNT ON; USE [database];`` before ``query``;
    through ``runner`` (``host_run``) when given.
    """
    if params['engine'] == 'mssql':
        timeout = (params.get('connect_timeout') or 10) + 60
        try:
            statement = _mssql.scalar_statement(query, params.get('database'))
            if runner is None:
                return _mssql.first_value(_mssql.run(sqlcmd, params, statement, timeout=timeout))
            rc, out, err, timed_out = runner(_mssql.argv(sqlcmd, params, statement), timeout)
            if timed_out:
                raise _mssql.MssqlError('sqlcmd did not answer within %s s' % timeout)
            return _mssql.first_value(_mssql.judge(rc, out, err))
        except _mssql.MssqlError as exc:
            raise MigrationError('version_query: %s' % exc) from None
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
    if host_runner(module) is not None:
        return argv  # found by the host's own program search when it runs (a missing one fails there, in words)
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
def read_version(module, argv):
    params = module.params
    runner = host_runner(module)
    if argv is not None:
        if runner is None:
            rc, out, err = module.run_command(argv)
        else:
            rc, out, err, timed_out = runner(argv, VERSION_TIMEOUT)
            if timed_out:
                raise MigrationError('version_command gave no answer within %d s' % VERSION_TIMEOUT)
        if rc != 0:
            raise MigrationError('version_command exited with %d: %s' % (rc, (err or out).strip()[-500:]))
        return parse_reported_version(out, 'version_command')
    if params['engine'] != 'mssql':
        sqlcmd = None
    elif runner is not None:
        sqlcmd = 'sqlcmd'
    else:
        sqlcmd = module.get_bin_path('sqlcmd', required=True)
    return parse_reported_version(read_version_sql(params, params['version_query'], sqlcmd, runner), 'version_query')


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
        problem = check_connection_params(params, VERSION_QUERY_ENGINES)
        if not problem and params['engine'] == 'mssql':
            try:
                _mssql.check_params(params)
            except _mssql.MssqlError as exc:
                problem = str(exc)
        if problem:
            module.fail_json(msg='version_query: %s' % problem, **result)
        if host_runner(module) is not None and params['engine'] != 'mssql':
            module.fail_json(msg='version_query with engine %s connects with a Python driver where the module runs, not on'
                                 ' the Windows host; use version_command (or engine mssql: sqlcmd on the host)'
                                 % params['engine'], **result)
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
        runner = host_runner(module)
        rc, out, err, timed_out = (runner or run_tool)(argv, params['command_timeout'])
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
