"""Unit tests for the shared database connection options."""
from __future__ import annotations

import sqlite3

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import database


def params(**kwargs):
    base = {name: None for name in database.database_argument_spec()}
    base['connect_timeout'] = 10
    base.update(kwargs)
    return base


@pytest.mark.parametrize('kwargs, supported, expected', [
    (dict(engine='postgresql', database='pmod'), database.ENGINES, None),
    (dict(engine='postgresql'), database.ENGINES, 'engine postgresql needs database'),
    (dict(engine='mysql'), database.ENGINES, 'engine mysql needs database'),
    (dict(engine='sqlite'), database.ENGINES, 'engine sqlite needs path'),
    (dict(engine='files'), database.ENGINES, 'engine files needs path'),
    (dict(engine='firebird'), database.ENGINES, 'engine firebird needs path'),
    (dict(engine='firebird', database='KSAMU'), database.ENGINES, None),
    (dict(engine='mssql', database='ImageServer'), ('postgresql', 'sqlite'), 'engine mssql is not supported'),
    (dict(engine='postgresql', database='x', login_port=70000), database.ENGINES, 'login_port 70000 is out of range'),
    (dict(engine='postgresql', database='x', login_port=0), database.ENGINES, 'login_port 0 is out of range'),
    (dict(engine='sqlite', path='/x.db', connect_timeout=0), database.ENGINES, 'connect_timeout must be positive'),
])
def test_check_connection_params(kwargs, supported, expected):
    message = database.check_connection_params(params(**kwargs), supported)
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.startswith(expected)


@pytest.mark.parametrize('kwargs, expected', [
    (dict(path='/srv/ksamu/main.fdb'), '/srv/ksamu/main.fdb'),
    (dict(path='/srv/ksamu/main.fdb', login_host='db1'), 'db1/3050:/srv/ksamu/main.fdb'),
    (dict(database='KSAMU', path='/x.fdb', login_host='db1', login_port=3051), 'db1/3051:KSAMU'),
])
def test_firebird_dsn(kwargs, expected):
    assert database.firebird_dsn(params(engine='firebird', **kwargs)) == expected


def test_argument_spec_hides_password():
    spec = database.database_argument_spec()
    assert spec['login_password']['no_log'] is True
    assert spec['engine']['choices'] == list(database.ENGINES)


def test_sqlite_connect_and_version(tmp_path):
    path = tmp_path / 'site.db'
    sqlite3.connect(str(path)).close()
    conn = database.connect(params(engine='sqlite', path=str(path)))
    try:
        assert database.server_version(conn, 'sqlite') == sqlite3.sqlite_version
    finally:
        conn.close()


def test_sqlite_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(database.DatabaseError, match='does not exist'):
        database.connect(params(engine='sqlite', path=str(tmp_path / 'absent.db')))


def test_describe_error_keeps_first_line_only():
    assert database.describe_error(ValueError('first line\nsecond line')) == 'first line'
    assert database.describe_error(ValueError('')) == 'ValueError'
