"""schema_update on real PostgreSQL 15, MariaDB 10.11, SQLite and Firebird 3, and with Orthanc's --upgrade.

Every case reads the state back from the database itself (the history table, the tables the migrations
create), never from the module's own report alone.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from harness import COLLECTIONS, run_task
import servers
import sqlcmd_double

sys.path.insert(0, COLLECTIONS)

from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as schema_module  # noqa: E402

MODULE = 'clinops.upgrade.schema_update'
ENGINES = ['postgresql', 'mysql', 'sqlite', 'firebird']
HISTORY = 'clinops_schema_history'


class Db:
    """A fresh database on one engine: the module's params and a way to read it back."""

    def __init__(self, engine, params, opener):
        self.engine = engine
        self.params = params
        self._open = opener

    def rows(self, sql):
        conn = self._open()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            cur.close()
            if self.engine == 'firebird':
                conn.commit()
            return [tuple(r) for r in rows]
        finally:
            conn.close()

    def table_exists(self, name):
        query = {
            'postgresql': "SELECT count(*) FROM pg_tables WHERE tablename = '%s'",
            'mysql': "SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = '%s'",
            'sqlite': "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'",
            'firebird': "SELECT count(*) FROM rdb$relations WHERE rdb$relation_name = UPPER('%s')",
        }[self.engine]
        return self.rows(query % name)[0][0] > 0

    def history(self):
        """{version: success} read from the history table ({} when it does not exist)."""
        if not self.table_exists(HISTORY):
            return {}
        return dict((str(v).strip(), bool(s)) for v, s in self.rows('SELECT version, success FROM %s' % HISTORY))

    def run(self, args, **kwargs):
        return run_task(MODULE, dict(self.params, **args), **kwargs)


@pytest.fixture(params=ENGINES)
def db(request, tmp_path):
    engine = request.param
    name = 'd' + uuid.uuid4().hex[:10]
    if engine == 'postgresql':
        server = request.getfixturevalue('postgres_server')
        server.create_database(name)
        return Db(engine, server.params(name), lambda: server.connect(name))
    if engine == 'mysql':
        server = request.getfixturevalue('mariadb_server')
        server.create_database(name)
        return Db(engine, server.params(name), lambda: server.connect(name))
    if engine == 'firebird':
        server = request.getfixturevalue('firebird_server')
        server.create_database(name)
        return Db(engine, server.params(name), lambda: server.connect(name))
    path = str(tmp_path / (name + '.sqlite'))
    sqlite3.connect(path).close()
    return Db(engine, dict(engine='sqlite', path=path), lambda: sqlite3.connect(path))


def write(folder, files):
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding='utf-8')
    return str(folder)


FIVE = {
    'V1__create_t1.sql': '-- the first table\nCREATE TABLE t1 (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50));\n',
    'V2__fill_t1.sql': "INSERT INTO t1 (id, name) VALUES (1, 'one; with a semicolon');\n"
                       "/* a comment; with a semicolon */\nINSERT INTO t1 (id, name) VALUES (2, 'it''s two');\n",
    'V3__create_t3.sql': 'CREATE TABLE t3 (id INTEGER);\n',
    'V4__create_t4.sql': 'CREATE TABLE t4 (id INTEGER);\n',
    'V10__create_t10.sql': 'CREATE TABLE t10 (id INTEGER);\n',
}
BROKEN_V3 = 'CREATE TABLE t3 (id INTEGER);\n\nCREAT TABLE oops (id INTEGER);\n'


def test_check_apply_rerun(db, tmp_path):
    folder = write(tmp_path / 'sql', FIVE)
    check = db.run({'migrations': folder}, check=True, diff=True)
    assert not check.get('failed'), check
    assert check['changed'] is True
    assert [p['version'] for p in check['pending']] == ['1', '2', '3', '4', '10']  # 10 after 4: numeric order
    assert check['from_version'] is None and check['to_version'] == '10' and check['kind'] == 'major'
    assert "'it''s two'" in check['diff']['after'] and 'V10__create_t10.sql' in check['diff']['after']
    assert db.history() == {} and not db.table_exists('t1')  # check mode touched nothing

    real = db.run({'migrations': folder}, diff=True)
    assert not real.get('failed'), real
    assert real['changed'] is True
    assert [a['version'] for a in real['applied']] == ['1', '2', '3', '4', '10']
    assert all(a['duration_s'] >= 0 for a in real['applied'])
    assert real['transactional'] is (db.engine != 'mysql')
    assert db.history() == {'1': True, '2': True, '3': True, '4': True, '10': True}
    assert sorted(db.rows('SELECT id, name FROM t1')) == [(1, 'one; with a semicolon'), (2, "it's two")]
    assert db.table_exists('t10')

    again = db.run({'migrations': folder})
    assert not again.get('failed'), again
    assert again['changed'] is False and again['applied'] == [] and again['kind'] == 'none'
    assert again['from_version'] == again['to_version'] == '10'
    assert len(db.history()) == 5


def test_syntax_error_in_migration_3_of_5(db, tmp_path):
    folder = write(tmp_path / 'sql', dict(FIVE, **{'V3__create_t3.sql': BROKEN_V3}))
    res = db.run({'migrations': folder})
    assert res.get('failed'), res
    assert 'V3__create_t3.sql' in res['msg'] and 'CREAT TABLE oops' in res['msg'], res['msg']
    assert res['failed_migration']['line'] == 3
    assert [a['version'] for a in res['applied']] == ['1', '2']
    assert res['to_version'] == '2'
    history = db.history()
    assert history.get('1') is True and history.get('2') is True
    assert '4' not in history and not db.table_exists('t4')
    if db.engine == 'mysql':
        # no transactional DDL: t3 stays, the failure is recorded, later runs refuse until repair
        assert history['3'] is False and db.table_exists('t3')
        assert res['failed_migration']['recorded'] is True
        again = db.run({'migrations': folder})
        assert again.get('failed') and 'repair' in again['msg'], again
    else:
        assert '3' not in history and not db.table_exists('t3')  # rolled back whole
        assert res['failed_migration']['rolled_back'] is True
        again = db.run({'migrations': folder})
        assert again.get('failed') and 'V3__create_t3.sql' in again['msg']
        write(tmp_path / 'sql', FIVE)  # fixed: an unapplied file may change
        fixed = db.run({'migrations': folder})
        assert not fixed.get('failed'), fixed
        assert [a['version'] for a in fixed['applied']] == ['3', '4', '10']
        assert len(db.history()) == 5


def test_edited_applied_file_fails_before_applying(db, tmp_path):
    files = dict((k, FIVE[k]) for k in ('V1__create_t1.sql', 'V2__fill_t1.sql'))
    folder = write(tmp_path / 'sql', files)
    assert not db.run({'migrations': folder}).get('failed')
    write(tmp_path / 'sql', {'V1__create_t1.sql': FIVE['V1__create_t1.sql'].replace('50', '60'),
                             'V3__create_t3.sql': FIVE['V3__create_t3.sql']})
    for check in (True, False):
        res = db.run({'migrations': folder}, check=check)
        assert res.get('failed') and 'checksum' in res['msg'] and 'V1__create_t1.sql' in res['msg'], res
    assert db.history() == {'1': True, '2': True} and not db.table_exists('t3')


def _hold_lock(db):
    backend = schema_module.BACKENDS[db.engine](dict(db.params, connect_timeout=10), HISTORY, 0)
    backend.open()
    backend.lock()
    return backend


def test_concurrent_run_waits_then_fails_on_lock_timeout(db, tmp_path):
    folder = write(tmp_path / 'sql', {'V1__create_t1.sql': FIVE['V1__create_t1.sql']})
    holder = _hold_lock(db)  # a second connection holds the lock, as a concurrent run would
    try:
        started = time.monotonic()
        res = db.run({'migrations': folder, 'lock_timeout': 2})
        waited = time.monotonic() - started
        assert res.get('failed') and 'lock' in res['msg'] and 'lock_timeout' in res['msg'], res
        assert waited >= 1.5, waited
        if db.engine == 'sqlite':
            holder.unlock()  # the SQLite lock blocks readers too: release it before reading back
    finally:
        holder.finish()
        holder.close()
    assert db.history() == {} and not db.table_exists('t1')
    res = db.run({'migrations': folder, 'lock_timeout': 2})
    assert not res.get('failed') and res['changed'], res
    assert db.history() == {'1': True}


PHASED = {
    'V1__create_t1.sql': '-- phase: offline\n' + FIVE['V1__create_t1.sql'],
    'V2__add_t2.sql': '-- clinops release 2\n-- phase: pre\nCREATE TABLE t2 (id INTEGER);\n',
    'V3__create_t3.sql': FIVE['V3__create_t3.sql'],
    'V4__drop_t2.sql': '-- phase: post\nDROP TABLE t2;\n',
}


def test_phases(db, tmp_path):
    folder = write(tmp_path / 'sql', PHASED)
    blocked = db.run({'migrations': folder, 'phase': 'offline'})
    assert blocked.get('failed') and 'V2__add_t2.sql' in blocked['msg'], blocked
    pre = db.run({'migrations': folder, 'phase': 'pre'})
    assert not pre.get('failed'), pre
    assert [a['version'] for a in pre['applied']] == ['2']
    assert [r['version'] for r in pre['remaining']] == ['1', '3', '4']
    assert pre['to_version'] is None  # V1 is still missing: the database is not at any release yet
    assert db.history() == {'2': True} and db.table_exists('t2') and not db.table_exists('t1')
    check_post = db.run({'migrations': folder, 'phase': 'post'}, check=True)
    assert check_post.get('failed') and 'offline' in check_post['msg']
    offline = db.run({'migrations': folder, 'phase': 'offline'})
    assert [a['version'] for a in offline['applied']] == ['1', '3'], offline
    assert offline['to_version'] == '3'
    post = db.run({'migrations': folder, 'phase': 'post'})
    assert [a['version'] for a in post['applied']] == ['4'], post
    assert post['to_version'] == '4' and not db.table_exists('t2')
    assert db.history() == {'1': True, '2': True, '3': True, '4': True}
    assert db.run({'migrations': folder, 'phase': 'post'})['changed'] is False


def test_baseline_adopts_an_existing_database(db, tmp_path):
    conn_files = {'V1__create_t1.sql': FIVE['V1__create_t1.sql']}
    # the database was built by hand up to version 2: t1 exists, no history
    write(tmp_path / 'manual', conn_files)
    setup = db.run({'migrations': str(tmp_path / 'manual'), 'history_table': 'manual_history'})
    assert not setup.get('failed'), setup
    folder = write(tmp_path / 'sql', dict(FIVE))
    check = db.run({'migrations': folder, 'baseline': '2'}, check=True)
    assert [p['version'] for p in check['pending']] == ['3', '4', '10'] and check['baseline'] == '2'
    assert db.history() == {}
    res = db.run({'migrations': folder, 'baseline': '2'})
    assert not res.get('failed'), res
    assert res['from_version'] == '2' and res['to_version'] == '10'
    assert db.history() == {'2': True, '3': True, '4': True, '10': True}
    assert db.rows("SELECT phase FROM %s WHERE version = '2'" % HISTORY)[0][0].strip() == 'baseline'
    assert db.rows('SELECT count(*) FROM t1')[0][0] == 0  # V2 (the insert) did not run
    assert db.run({'migrations': folder, 'baseline': '2'})['changed'] is False


def test_downgrade_and_newer_database_refused(db, tmp_path):
    folder = write(tmp_path / 'sql', FIVE)
    assert not db.run({'migrations': folder, 'target': '4'}).get('failed')
    assert set(db.history()) == {'1', '2', '3', '4'}
    down = db.run({'migrations': folder, 'target': '2'})
    assert down.get('failed') and 'downgrade' in down['msg'], down
    older_release = write(tmp_path / 'old', dict((k, FIVE[k]) for k in ('V1__create_t1.sql', 'V2__fill_t1.sql')))
    newer = db.run({'migrations': older_release})
    assert newer.get('failed') and 'newer than this release' in newer['msg'], newer
    assert set(db.history()) == {'1', '2', '3', '4'}


def test_mariadb_repair_after_failed_migration(mariadb_server, tmp_path):
    name = 'repair' + uuid.uuid4().hex[:6]
    mariadb_server.create_database(name)
    db = Db('mysql', mariadb_server.params(name), lambda: mariadb_server.connect(name))
    folder = write(tmp_path / 'sql', dict(FIVE, **{'V3__create_t3.sql': BROKEN_V3}))
    assert db.run({'migrations': folder}).get('failed')
    assert db.history()['3'] is False
    write(tmp_path / 'sql', {'V3__create_t3.sql': 'CREATE TABLE IF NOT EXISTS t3 (id INTEGER);\n'})  # the fix
    refused = db.run({'migrations': folder})
    assert refused.get('failed') and 'repair=true' in refused['msg']
    check = db.run({'migrations': folder, 'repair': True}, check=True)
    assert check['repaired'] == ['3'] and db.history()['3'] is False
    res = db.run({'migrations': folder, 'repair': True})
    assert not res.get('failed'), res
    assert res['repaired'] == ['3'] and [a['version'] for a in res['applied']] == ['3', '4', '10']
    assert db.history() == {'1': True, '2': True, '3': True, '4': True, '10': True}


def test_firebird_commit_points_and_procedures(firebird_server, tmp_path):
    name = 'fbproc' + uuid.uuid4().hex[:6]
    firebird_server.create_database(name)
    db = Db('firebird', firebird_server.params(name), lambda: firebird_server.connect(name))
    folder = write(tmp_path / 'sql', {
        'V1__table_and_rows.sql': 'CREATE TABLE t1 (id INTEGER NOT NULL, name VARCHAR(20));\nCOMMIT WORK;\n'
                                  "INSERT INTO t1 VALUES (1, 'a;b');\n",
        'V2__procedure.sql': 'SET TERM ^ ;\nCREATE PROCEDURE p_count RETURNS (n INTEGER) AS\nBEGIN\n'
                             '  SELECT COUNT(*) FROM t1 INTO :n;\n  SUSPEND;\nEND^\nSET TERM ; ^\n',
        'V3__trigger.sql': 'CREATE TRIGGER t1_bi FOR t1 BEFORE INSERT AS\nDECLARE VARIABLE x INTEGER;\nBEGIN\n'
                           '  x = 1;\n  IF (NEW.name IS NULL) THEN NEW.name = CASE WHEN x = 1 THEN \'none\' ELSE \'?\' END;\nEND;\n',
        'V4__use_trigger.sql': 'INSERT INTO t1 (id) VALUES (2);\n',
        'V5__fails_after_commit.sql': 'CREATE TABLE t5 (id INTEGER);\nCOMMIT;\nINSERT INTO t5 VALUES (\'x\');\n',
    })
    res = db.run({'migrations': folder})
    assert res.get('failed') and 'V5__fails_after_commit.sql' in res['msg'], res
    assert db.rows('SELECT n FROM p_count')[0][0] == 2
    assert sorted(db.rows('SELECT id, name FROM t1')) == [(1, 'a;b'), (2, 'none')]
    assert db.history() == {'1': True, '2': True, '3': True, '4': True, '5': False}
    assert db.table_exists('t5') and res['failed_migration']['recorded'] is True


@pytest.mark.parametrize('engine', ['sqlite', 'postgresql'])
def test_bad_input_fails_before_anything_is_applied(engine, request, tmp_path):
    if engine == 'postgresql':
        server = request.getfixturevalue('postgres_server')
        name = 'bad' + uuid.uuid4().hex[:6]
        server.create_database(name)
        db = Db(engine, server.params(name), lambda: server.connect(name))
    else:
        path = str(tmp_path / 'bad.sqlite')
        sqlite3.connect(path).close()
        db = Db(engine, dict(engine='sqlite', path=path), lambda: sqlite3.connect(path))
    good = {'V1__create_t1.sql': FIVE['V1__create_t1.sql']}
    cases = [
        (dict(good, **{'V2-no-separator.sql': 'SELECT 1;'}), {}, 'malformed migration file name'),
        (dict(good, **{'V1.0__again.sql': 'SELECT 1;'}), {}, 'two files have version 1'),
        (good, {'target': '7'}, 'target 7 has no migration file'),
        (dict(good, **{'V2__bad_phase.sql': '-- phase: later\nSELECT 1;'}), {}, 'phase must be one of'),
        (dict(good, **{'V2__open_quote.sql': "SELECT 'unterminated;\n"}), {}, 'unterminated'),
        (dict(good, **{'V2__tx.sql': 'BEGIN;\nSELECT 1;\nCOMMIT;\n'}), {}, 'own transaction'),
        (good, {'target': 'six'}, 'not a version'),
    ]
    for i, (files, extra, expected) in enumerate(cases):
        folder = write(tmp_path / ('case%d' % i), files)
        res = db.run(dict({'migrations': folder}, **extra))
        assert res.get('failed') and expected in res['msg'], (expected, res)
        assert db.history() == {} and not db.table_exists('t1'), expected
    folder = write(tmp_path / 'fine', good)
    if engine == 'postgresql':
        unreachable = dict(db.params, login_port=servers.free_port(), connect_timeout=2)
        res = run_task(MODULE, dict(unreachable, migrations=folder))
        assert res.get('failed') and 'cannot connect' in res['msg'], res
    else:
        res = run_task(MODULE, dict(engine='files', path=str(tmp_path), migrations=folder))
        assert res.get('failed') and 'engine files is not supported' in res['msg'], res
    res = run_task(MODULE, dict(engine='sqlite', path=str(tmp_path / 'missing.sqlite'), migrations=folder))
    assert res.get('failed') and 'does not exist' in res['msg'], res


# ---------------------------------------------------------------------------------------------
# command mode
# ---------------------------------------------------------------------------------------------
STAND_IN = r'''#!/usr/bin/env python3
"""A vendor schema tool stand-in: sets app_version.v in an SQLite file and counts its runs."""
import sqlite3, sys, time
path, version, behaviour = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else 'ok')
conn = sqlite3.connect(path)
conn.execute('UPDATE runs SET n = n + 1')
conn.commit()
if behaviour == 'hang':
    time.sleep(600)
if behaviour == 'crash':
    print('schema step failed: disk full', file=sys.stderr)
    sys.exit(3)
if behaviour != 'noop':
    conn.execute('UPDATE app_version SET v = ?', (version,))
    conn.commit()
print('done')
'''


@pytest.fixture
def stand_in(tmp_path):
    tool = tmp_path / 'schema-tool'
    tool.write_text(STAND_IN, encoding='utf-8')
    tool.chmod(0o755)
    path = str(tmp_path / 'app.sqlite')
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE app_version (v TEXT); INSERT INTO app_version VALUES ('6.0.51.22965');"
                       'CREATE TABLE runs (n INTEGER); INSERT INTO runs VALUES (0);')
    conn.close()

    def state():
        conn = sqlite3.connect(path)
        try:
            return conn.execute('SELECT v FROM app_version').fetchone()[0], conn.execute('SELECT n FROM runs').fetchone()[0]
        finally:
            conn.close()
    return str(tool), path, state


def test_command_with_stand_in_tool(stand_in):
    tool, path, state = stand_in
    base = dict(engine='sqlite', path=path, version_query='SELECT v FROM app_version', major_blocks=3)
    args = dict(base, command=[tool, path, '6.0.52.1'], target='6.0.52.1')
    check = run_task(MODULE, args, check=True)
    assert check['changed'] is True and check['kind'] == 'major' and check['from_version'] == '6.0.51.22965'
    assert state() == ('6.0.51.22965', 0)  # the tool did not run
    res = run_task(MODULE, args)
    assert not res.get('failed'), res
    assert res['changed'] is True and res['to_version'] == '6.0.52.1' and res['kind'] == 'major'
    assert state() == ('6.0.52.1', 1)
    again = run_task(MODULE, args)
    assert again['changed'] is False and state() == ('6.0.52.1', 1)  # target reached: not run again
    minor = run_task(MODULE, dict(base, command='%s %s 6.0.52.2' % (tool, path)))  # a string, split without a shell
    assert minor['changed'] is True and minor['kind'] == 'minor' and state() == ('6.0.52.2', 2)

    noop = run_task(MODULE, dict(base, command=[tool, path, '6.0.53.0', 'noop'], target='6.0.53.0'))
    assert noop.get('failed') and 'target 6.0.53.0 was not reached' in noop['msg'], noop
    assert noop['changed'] is False and state() == ('6.0.52.2', 3)
    crash = run_task(MODULE, dict(base, command=[tool, path, '6.0.53.0', 'crash'], target='6.0.53.0'))
    assert crash.get('failed') and 'exited with 3' in crash['msg'] and 'disk full' in crash['msg'], crash
    down = run_task(MODULE, dict(base, command=[tool, path, '6.0.50.0'], target='6.0.50.0'))
    assert down.get('failed') and 'downgrade' in down['msg'] and state() == ('6.0.52.2', 4)


def test_command_with_version_command_and_timeout(stand_in, tmp_path):
    tool, path, state = stand_in
    reader = tmp_path / 'read-version'
    reader.write_text("#!/bin/sh\nexec sqlite3 '%s' 'SELECT v FROM app_version'\n" % path, encoding='utf-8')
    reader.chmod(0o755)
    args = dict(engine='files', path=str(tmp_path), version_command=[str(reader)], command=[tool, path, '7.0', 'hang'],
                target='7.0', command_timeout=2)
    started = time.monotonic()
    res = run_task(MODULE, args)
    assert time.monotonic() - started < 60
    assert res.get('failed') and 'command_timeout' in res['msg'] and res['to_version'] == '6.0.51.22965', res
    assert state() == ('6.0.51.22965', 1)
    out = subprocess.run(['pgrep', '-f', path], capture_output=True, text=True, check=False).stdout.split()
    assert out == [], 'the hung tool was left running: %s' % out
    ok = run_task(MODULE, dict(args, command=[tool, path, '7.0'], command_timeout=0))
    assert not ok.get('failed') and ok['changed'] and ok['to_version'] == '7.0', ok
    assert state() == ('7.0', 2)


IS_QUERY = 'SELECT value FROM GlobalProperties WHERE property = 1'
IS_TOOL = """\
import json, sys
state_file, version = sys.argv[1], sys.argv[2]
with open(state_file) as handle:
    state = json.load(handle)
state['queries'][%r] = [version]
with open(state_file, 'w') as handle:
    json.dump(state, handle)
print('schema upgraded to', version)
""" % IS_QUERY


def test_command_with_mssql_version_query_through_sqlcmd(tmp_path):
    """No SQL Server here: the version is read through the sqlcmd double (it refuses what real sqlcmd would)."""
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir, {'product_version': '16.0.4135.4', 'databases': {'ImageServer': {'tables': {}}},
                                   'queries': {IS_QUERY: ['13.1.0']}})
    tool = tmp_path / 'is-schema-tool.py'
    tool.write_text(IS_TOOL, encoding='utf-8')
    env = {'PATH': os.pathsep.join([bindir, os.path.dirname(sys.executable), os.environ.get('PATH', '')])}
    args = dict(engine='mssql', database='ImageServer', login_user='is_admin', login_password='Sql-S3cret!',
                version_query=IS_QUERY, target='13.2.0',
                command=[sys.executable, str(tool), sqlcmd_double.state_path(bindir), '13.2.0'])
    res = run_task(MODULE, args, env=env)
    assert not res.get('failed'), res
    assert res['from_version'] == '13.1.0' and res['to_version'] == '13.2.0' and res['changed'] is True
    assert sqlcmd_double.read_state(bindir)['queries'][IS_QUERY] == ['13.2.0']
    calls = sqlcmd_double.calls(bindir)
    assert [c['statement'] for c in calls] == ['SET NOCOUNT ON; USE [ImageServer]; %s' % IS_QUERY] * 2
    assert all(c['password_in_env'] and c['argv'][:2] == ['-U', 'is_admin'] and 'Sql-S3cret!' not in json.dumps(c['argv'])
               for c in calls)
    again = run_task(MODULE, args, env=env)
    assert again['changed'] is False and len(sqlcmd_double.calls(bindir)) == 3  # at the target: read once, not run

    # a query SQL Server refuses fails before the tool runs, with SQL Server's message
    bad = run_task(MODULE, dict(args, version_query='SELECT value FROM NoSuchTable', target='13.3.0',
                                command=[sys.executable, str(tool), sqlcmd_double.state_path(bindir), '13.3.0']), env=env)
    assert bad.get('failed') and 'Msg 208' in bad['msg'] and 'NoSuchTable' in bad['msg'], bad
    assert sqlcmd_double.read_state(bindir)['queries'][IS_QUERY] == ['13.2.0']


ORTHANC_QUERY = 'SELECT value FROM GlobalProperties WHERE property = 1'


def _orthanc_config(tmp_path):
    storage = tmp_path / 'orthanc-db'
    config = tmp_path / 'orthanc.json'
    http_port = servers.free_port()
    config.write_text(json.dumps({
        'Name': 'clinops-test', 'StorageDirectory': str(storage), 'IndexDirectory': str(storage),
        'HttpPort': http_port, 'DicomServerEnabled': False, 'DicomPort': servers.free_port(),
        'RemoteAccessAllowed': False, 'Plugins': [], 'AuthenticationEnabled': False,
    }), encoding='utf-8')
    return str(config), str(storage / 'index'), http_port


def _orthanc_left(config):
    out = subprocess.run(['pgrep', '-f', config], capture_output=True, text=True, check=False).stdout.split()
    return [pid for pid in out if pid != str(os.getpid())]


@pytest.mark.skipif(not os.path.exists('/usr/sbin/Orthanc'), reason='Debian orthanc package not installed')
def test_command_orthanc_upgrade_on_its_own_index(tmp_path):
    config, index, http_port = _orthanc_config(tmp_path)
    subprocess.run(['/usr/sbin/Orthanc', config, '--upgrade'], check=True, capture_output=True, timeout=120)
    assert os.path.exists(index)
    args = dict(engine='sqlite', path=index, command=['Orthanc', config, '--upgrade'], version_query=ORTHANC_QUERY,
                command_timeout=120)
    res = run_task(MODULE, args)  # no target: the tool runs, the index tells whether anything changed
    assert not res.get('failed'), res
    assert res['rc'] == 0 and res['from_version'] == res['to_version'] == '6' and res['changed'] is False
    same = run_task(MODULE, dict(args, target='6'), check=True)
    assert same['changed'] is False

    # the served REST API agrees with what the module read from the index
    proc = subprocess.Popen(['/usr/sbin/Orthanc', config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        servers.wait_port(http_port, proc=proc)
        with urllib.request.urlopen('http://127.0.0.1:%d/system' % http_port, timeout=10) as reply:
            system = json.loads(reply.read())
        assert str(system['DatabaseVersion']) == res['to_version']
    finally:
        servers.stop_pid(proc.pid)

    # an older index (schema 5): Orthanc 1.10.1's --upgrade has been seen to hang on it; whatever the
    # tool does, the result must match what the index says afterwards, and no Orthanc may be left behind
    conn = sqlite3.connect(index)
    conn.execute("UPDATE GlobalProperties SET value = '5' WHERE property = 1")
    conn.commit()
    conn.close()
    old = run_task(MODULE, dict(args, target='6', command_timeout=15))
    conn = sqlite3.connect(index)
    now = conn.execute(ORTHANC_QUERY).fetchone()[0]
    conn.close()
    assert old['from_version'] == '5' and old['to_version'] == now, old
    if now == '6':
        assert not old.get('failed') and old['changed'] is True
    else:
        assert old.get('failed') and 'target 6 was not reached' in old['msg'], old
    assert _orthanc_left(config) == []
