"""The shared connection code against real servers: right password connects, wrong one says why."""
import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import database


def _params(raw):
    full = {name: None for name in database.database_argument_spec()}
    full['connect_timeout'] = 5
    full.update(raw)
    return full


@pytest.mark.parametrize('fixture, version_prefix', [
    ('postgres_server', '15.'), ('mariadb_server', '10.11'), ('firebird_server', '3.0'),
])
def test_connect_reports_server_version(request, fixture, version_prefix):
    server = request.getfixturevalue(fixture)
    name = 'conn_check'
    if fixture == 'firebird_server':
        server.create_database(name)
    else:
        try:
            server.create_database(name)
        except Exception:  # pylint: disable=broad-except
            pass  # created by an earlier parametrization of the same session server
    conn = database.connect(_params(server.params(name)))
    try:
        assert database.server_version(conn, server.engine).startswith(version_prefix)
    finally:
        conn.close()


@pytest.mark.parametrize('fixture', ['postgres_server', 'mariadb_server'])
def test_wrong_password_is_named(request, fixture):
    server = request.getfixturevalue(fixture)
    raw = server.params('postgres' if fixture == 'postgres_server' else 'mysql')
    raw['login_password'] = 'not-the-password'
    with pytest.raises(database.DatabaseError) as info:
        database.connect(_params(raw))
    assert 'not-the-password' not in str(info.value)
    assert 'password' in str(info.value).lower() or 'denied' in str(info.value).lower()


def test_unreachable_server_is_named():
    raw = dict(engine='postgresql', database='x', login_host='127.0.0.1', login_port=1, login_user='u', login_password='p')
    with pytest.raises(database.DatabaseError, match='cannot connect to postgresql database x'):
        database.connect(_params(raw))
