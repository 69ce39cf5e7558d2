"""SQL Server through sqlcmd: quoting, refusals, the exact command line and environment (no SQL Server runs here)."""
from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import mssql


@pytest.mark.parametrize('name, quoted', [
    ('ImageServer', '[ImageServer]'),
    ('a]b', '[a]]b]'),
    ('[x]', '[[x]]]'),
    ("o'neil db", "[o'neil db]"),
    ('$(evil)', '[$(evil)]'),  # sqlcmd runs with -x: no scripting variables are substituted
])
def test_quote_name(name, quoted):
    assert mssql.quote_name(name) == quoted


@pytest.mark.parametrize('name, words', [
    ('', 'database must not be empty'),
    (None, 'database must not be empty'),
    ('x' * 129, 'longer than 128 characters'),
    ('pmod\nGO\nDROP DATABASE pmod', "control character '\\\\n'"),
    ('a\x00b', 'control character'),
    ('pmod ', 'starts or ends with a space'),
])
def test_quote_name_refuses_unsafe_names(name, words):
    with pytest.raises(mssql.MssqlError, match=words):
        mssql.quote_name(name)


def test_literal():
    assert mssql.literal("C:\\b\\o'neil.bak") == "N'C:\\b\\o''neil.bak'"
    assert mssql.literal('') == "N''"
    with pytest.raises(mssql.MssqlError, match='path .* control character'):
        mssql.literal('/b/x\n.bak', 'path')


@pytest.mark.parametrize('params, server', [
    ({}, 'tcp:127.0.0.1,1433'),
    ({'login_host': 'db1.example.org', 'login_port': 14330}, 'tcp:db1.example.org,14330'),
    ({'login_host': 'db1', 'login_instance': 'SQLEXPRESS'}, 'tcp:db1\\SQLEXPRESS'),
    ({'login_host': '::1'}, 'tcp:::1,1433'),
])
def test_server(params, server):
    assert mssql.server(params) == server


@pytest.mark.parametrize('params, words', [
    ({'login_instance': 'SQLEXPRESS', 'login_port': 1433}, 'login_instance and login_port are both set'),
    ({'login_instance': 'bad name'}, 'not a SQL Server instance name'),
    ({'login_instance': 'X' * 17}, 'not a SQL Server instance name'),
    ({'login_host': 'db1,1434'}, 'not a host name'),
    ({'login_host': 'db1\\OTHER'}, 'not a host name'),
    ({'login_password': 'x'}, 'login_password is set without login_user'),
    ({'login_user': 'sa\r\n'}, 'login_user .* control character'),
    ({'database': 'a\tb'}, 'database .* control character'),
])
def test_check_params_refuses(params, words):
    with pytest.raises(mssql.MssqlError, match=words):
        mssql.check_params(params)


def test_argv_sql_login_and_windows_authentication():
    params = dict(login_host='127.0.0.1', login_port=1433, login_user='backup_op', login_password='S3cret!', connect_timeout=5)
    assert mssql.argv('/opt/mssql-tools18/bin/sqlcmd', params, 'SELECT 1') == [
        '/opt/mssql-tools18/bin/sqlcmd', '-U', 'backup_op', '-S', 'tcp:127.0.0.1,1433', '-d', 'master', '-b', '-h', '-1', '-W',
        '-s', '|', '-x', '-l', '5', '-Q', 'SELECT 1']
    windows = mssql.argv('sqlcmd', dict(login_instance='SQLEXPRESS'), 'SELECT 1')
    assert windows == ['sqlcmd', '-E', '-S', 'tcp:127.0.0.1\\SQLEXPRESS', '-d', 'master', '-b', '-h', '-1', '-W', '-s', '|', '-x',
                       '-l', '10', '-Q', 'SELECT 1']
    assert not any('S3cret!' in arg for arg in mssql.argv('sqlcmd', params, 'SELECT 1'))


def test_env_carries_the_password_only_for_a_sql_login_and_drops_sqlcmd_variables():
    base = {'PATH': '/usr/bin', 'SQLCMDPASSWORD': 'inherited', 'SQLCMDINI': '/tmp/startup.sql', 'SQLCMDSERVER': 'other',
            'SQLCMDUSER': 'other', 'SQLCMDDBNAME': 'other'}
    env = mssql.env(dict(login_user='sa', login_password='S3cret!'), base)
    assert env == {'PATH': '/usr/bin', 'SQLCMDPASSWORD': 'S3cret!', 'LC_ALL': 'C', 'LANG': 'C'}
    assert 'SQLCMDPASSWORD' not in mssql.env(dict(login_user=None, login_password=None), base)
    assert base['SQLCMDPASSWORD'] == 'inherited'  # the caller's environment is not changed


def test_scalar_statement_rows_and_first_value():
    assert mssql.scalar_statement('SELECT v FROM t') == 'SET NOCOUNT ON; SELECT v FROM t'
    assert mssql.scalar_statement('SELECT v FROM t', 'Image]Server') == 'SET NOCOUNT ON; USE [Image]]Server]; SELECT v FROM t'
    assert mssql.rows('6.0.10|x\n\n  7 \n') == [['6.0.10', 'x'], ['7']]
    assert mssql.first_value([['6.0.10', 'x']]) == '6.0.10'
    assert mssql.first_value([['NULL']]) is None and mssql.first_value([]) is None


def test_error_in_reads_sql_servers_message():
    out = 'Msg 208, Level 16, State 1, Server db1, Line 1\nInvalid object name \'GlobalProperties\'.\n'
    assert mssql.error_in(out) == "Msg 208, Level 16, State 1, Server db1, Line 1: Invalid object name 'GlobalProperties'."
    assert mssql.error_in('Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Login timeout expired.\n').startswith('Sqlcmd: Error:')
    assert mssql.error_in('Changed database context to \'master\'.\n') is None
    assert mssql.error_in('Msg 5701, Level 0, State 2\nChanged database context\n') is None  # informational, not an error


def fake_sqlcmd(tmp_path, body):
    path = tmp_path / 'sqlcmd'
    path.write_text('#!%s\nimport os, sys\n%s' % (sys.executable, body))
    path.chmod(0o755)
    return str(path)


def test_run_returns_rows_and_passes_the_password_in_the_environment(tmp_path):
    record = tmp_path / 'seen'
    sqlcmd = fake_sqlcmd(tmp_path, 'import json\njson.dump([sys.argv[1:], os.environ.get("SQLCMDPASSWORD")], open(%r, "w"))\n'
                                   'print("6.0.10|x")\n' % str(record))
    rows = mssql.run(sqlcmd, dict(login_user='sa', login_password='S3cret!'), 'SET NOCOUNT ON; SELECT 1', timeout=30)
    assert rows == [['6.0.10', 'x']]
    argv, password = json.loads(record.read_text())
    assert password == 'S3cret!' and 'S3cret!' not in argv and argv[-2:] == ['-Q', 'SET NOCOUNT ON; SELECT 1']


def test_run_fails_with_sql_servers_message(tmp_path):
    sqlcmd = fake_sqlcmd(tmp_path, 'print("Msg 208, Level 16, State 1, Server db1, Line 1")\nprint("Invalid object name \'t\'.")\n'
                                   'sys.exit(1)\n')
    with pytest.raises(mssql.MssqlError, match="exited with 1: Msg 208.*Invalid object name 't'"):
        mssql.run(sqlcmd, {}, 'SELECT v FROM t', timeout=30)


def test_run_kills_a_hanging_sqlcmd(tmp_path):
    sqlcmd = fake_sqlcmd(tmp_path, 'import time\ntime.sleep(60)\n')
    with pytest.raises(mssql.MssqlError, match='did not answer within 1 s'):
        mssql.run(sqlcmd, {}, 'SELECT 1', timeout=1)
    assert os.path.exists(sqlcmd)
