# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL Server through ``sqlcmd``, shared by db_backup (engine ``mssql``), schema_update (``version_query``) and
service_stop_ordered (``drain.query``).

Why ``sqlcmd`` on the host: it ships with SQL Server (and as the stand-alone ``mssql-tools18`` / go-sqlcmd), needs
no Python driver and no PowerShell module, and ``BACKUP DATABASE ... TO DISK`` writes the file on the SQL Server
host anyway, where db_backup then hashes it.  The password goes to ``sqlcmd`` in ``SQLCMDPASSWORD`` (its documented
variable), in the environment of that one child process only, never on its command line; ``-x`` turns off
``sqlcmd``'s scripting variables so a ``$(...)`` in a name or path is never substituted; ``SQLCMDINI`` (a script
``sqlcmd`` would run first) is removed from the child's environment.

Names are quoted here and nowhere else: identifiers as ``[name]`` with ``]`` doubled, strings as ``N'text'`` with
``'`` doubled.  A name that is empty, longer than 128 characters (``sysname``) or holds a control character (a
line break could end ``sqlcmd``'s batch) is refused with a message naming the option, before anything runs.
Database names never go on ``sqlcmd``'s command line (``-d``): every connection opens ``master`` and a statement
that needs another database starts with ``USE [name];``.

SQL Server cannot run where this collection is tested: the statements, the argument vectors and the environment
are unit-tested, and the integration tests run the modules against a ``sqlcmd`` double that refuses options
the real ``sqlcmd`` does not have.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

DEFAULT_PORT = 1433
MAX_NAME = 128
_INSTANCE_RE = re.compile(r'^[A-Za-z_&#][A-Za-z0-9_$#&]{0,15}$')
_HOST_RE = re.compile(r'^[A-Za-z0-9._:\-\[\]%]+$')
_ERROR_RE = re.compile(r'(?m)^(Msg \d+, Level (?:1[1-9]|2\d)[^\r\n]*)(?:\r?\n([^\r\n]*))?|^(Sqlcmd: Error:[^\r\n]*)')
DROPPED_ENV = ('SQLCMDPASSWORD', 'SQLCMDINI', 'SQLCMDUSER', 'SQLCMDSERVER', 'SQLCMDDBNAME')


class MssqlError(Exception):
    """Input that cannot be sent to SQL Server safely, or a failed sqlcmd run; the message says which in words."""


def _bad_char(text):
    for char in text:
        if ord(char) < 32 or ord(char) == 127:
            return char
    return None


def check_name(name, what='database'):
    """``name`` when it can be quoted safely as a SQL Server identifier; MssqlError naming ``what`` otherwise."""
    if name is None or not str(name).strip():
        raise MssqlError('%s must not be empty' % what)
    name = str(name)
    if len(name) > MAX_NAME:
        raise MssqlError('%s %r is longer than %d characters (SQL Server\'s sysname)' % (what, name[:40] + '...', MAX_NAME))
    bad = _bad_char(name)
    if bad is not None:
        raise MssqlError('%s %r holds the control character %r; refused (a line break could end sqlcmd\'s batch)' % (what, name, bad))
    if name != name.strip():
        raise MssqlError('%s %r starts or ends with a space; refused (SQL Server would not tell it from the name without)' % (what, name))
    return name


def quote_name(name, what='database'):
    """``[name]`` with ``]`` doubled, after :func:`check_name`."""
    return '[%s]' % check_name(name, what).replace(']', ']]')


def literal(value, what='value'):
    """``N'value'`` with ``'`` doubled; a control character is refused."""
    value = str(value)
    bad = _bad_char(value)
    if bad is not None:
        raise MssqlError('%s %r holds the control character %r; refused' % (what, value, bad))
    return "N'%s'" % value.replace("'", "''")


def server(params):
    """The ``-S`` value: ``tcp:host,port``, or ``tcp:host\\instance`` for a named instance (found by SQL Server Browser)."""
    host = params.get('login_host') or '127.0.0.1'
    if not _HOST_RE.match(host):
        raise MssqlError('login_host %r is not a host name or address' % host)
    instance = params.get('login_instance')
    if instance:
        if params.get('login_port'):
            raise MssqlError('login_instance and login_port are both set: sqlcmd would ignore the instance; give one')
        if not _INSTANCE_RE.match(instance):
            raise MssqlError('login_instance %r is not a SQL Server instance name (up to 16 letters, digits, _, $, #, &)' % instance)
        return 'tcp:%s\\%s' % (host, instance)
    return 'tcp:%s,%d' % (host, params.get('login_port') or DEFAULT_PORT)


def check_params(params):
    """Everything about a connection that can be checked without running anything; MssqlError in words."""
    server(params)
    if params.get('login_password') is not None and not params.get('login_user'):
        raise MssqlError('login_password is set without login_user: SQL Server authentication needs both; leave both'
                         ' unset for Windows authentication (the account the task runs as)')
    if params.get('login_user'):
        check_name(params['login_user'], 'login_user')
    if params.get('database'):
        check_name(params['database'], 'database')


def argv(sqlcmd, params, statement):
    """The ``sqlcmd`` command line for one batch ``statement`` (connected to ``master``; no password on it).

    ``-b`` exits non-zero on an error, ``-h -1 -W -s |`` print bare rows with ``|`` between columns,
    ``-x`` ignores scripting variables, ``-l`` is the login timeout.
    """
    cmd = [sqlcmd]
    if params.get('login_user'):
        cmd += ['-U', params['login_user']]
    else:
        cmd += ['-E']
    cmd += ['-S', server(params), '-d', 'master', '-b', '-h', '-1', '-W', '-s', '|', '-x',
            '-l', str(params.get('connect_timeout') or 10), '-Q', statement]
    return cmd


def env(params, base=None):
    """The environment of the ``sqlcmd`` child: ``SQLCMDPASSWORD`` for a SQL login, sqlcmd's other variables removed."""
    child = dict(os.environ if base is None else base)
    for name in DROPPED_ENV:
        child.pop(name, None)
    child['LC_ALL'] = 'C'
    child['LANG'] = 'C'
    if params.get('login_user') and params.get('login_password') is not None:
        child['SQLCMDPASSWORD'] = params['login_password']
    return child


def rows(text):
    """The non-empty output lines of ``sqlcmd -h -1 -W -s |``, each split into its columns."""
    return [line.strip().split('|') for line in (text or '').splitlines() if line.strip()]


def error_in(text):
    """The first error sqlcmd printed (``Msg N, Level 11+...`` with SQL Server's message line, or ``Sqlcmd: Error:``), or None."""
    match = _ERROR_RE.search(text or '')
    if not match:
        return None
    if match.group(3):
        return match.group(3).strip()
    return ('%s: %s' % (match.group(1).strip(), match.group(2).strip())) if match.group(2) else match.group(1).strip()


def scalar_statement(query, database=None):
    """``query`` wrapped so that only its rows are printed: ``SET NOCOUNT ON;`` (and ``USE [database];``)."""
    prefix = 'SET NOCOUNT ON; '
    if database:
        prefix += 'USE %s; ' % quote_name(database)
    return prefix + query


def run(sqlcmd, params, statement, timeout=None):
    """Run one batch; return its rows.  MssqlError with sqlcmd's own error line when it fails or times out."""
    cmd = argv(sqlcmd, params, statement)
    # pylint: disable=consider-using-with
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(params), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise MssqlError('sqlcmd did not answer within %s s' % timeout) from None
    return judge(proc.returncode, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace'))


def judge(returncode, out, err):
    """The rows of one ``sqlcmd`` run from its exit code and output (wherever it ran: here, or on a Windows host);
    MssqlError with sqlcmd's own error line when it failed."""
    problem = error_in(out) or error_in(err)
    if returncode != 0 or problem:
        raise MssqlError('sqlcmd exited with %s: %s' % (returncode, problem or (err or out).strip()[-500:] or 'no output'))
    return rows(out)


def first_value(result_rows):
    """The first column of the first row, or None (no row, or SQL NULL, which sqlcmd prints as ``NULL``)."""
    if not result_rows or not result_rows[0] or result_rows[0][0] == 'NULL':
        return None
    return result_rows[0][0]
