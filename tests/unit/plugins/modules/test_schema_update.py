# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import ast
import inspect
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils.schema import backend as schema_backend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import command as schema_command
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as schema_module
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import plan as schema_plan
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import firebird as schema_firebird
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import mysql as schema_mysql
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import postgresql as schema_postgresql
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import sqlite as schema_sqlite
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import sql as schema_sql

SCHEMA_MODULES = (schema_plan, schema_backend, schema_postgresql, schema_mysql, schema_sqlite, schema_firebird, schema_sql, schema_command,
                  schema_module)


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patched(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)


def run_module(args, check=False, diff=False):
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as caught:
            schema_module.run(basic.AnsibleModule(**schema_module.module_kwargs()))
    return caught.value.args[0]


def write(folder, files):
    os.makedirs(str(folder), exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(str(folder), name), 'w', encoding='utf-8') as handle:
            handle.write(text)
    return str(folder)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def test_scan_orders_numerically_and_reads_headers(tmp_path):
    folder = write(tmp_path, {
        'V6.0.10__ten.sql': 'SELECT 10;', 'V6.0.9__nine.sql': '-- phase: pre\nSELECT 9;',
        'V6_1__six_one.sql': '-- phase: post\nSELECT 61;', 'README.md': 'ignored', '.hidden.sql': 'ignored',
    })
    found = schema_plan.scan_migrations(folder)
    assert [m.version.text for m in found] == ['6.0.9', '6.0.10', '6.1']
    assert [m.phase for m in found] == ['pre', 'offline', 'post']
    assert found[2].description == 'six one' and found[2].filename == 'V6_1__six_one.sql'


@pytest.mark.parametrize('files, message', [
    ({'V1_create.sql': 'SELECT 1;'}, 'malformed'),
    ({'v1__lower.sql': 'SELECT 1;'}, 'malformed'),
    ({'R__repeatable.sql': 'SELECT 1;'}, 'malformed'),
    ({'V1__a.sql': 'SELECT 1;', 'V1.0__b.sql': 'SELECT 2;'}, 'two files have version 1'),
    ({'V1__a.sql': '-- phase: sometime\nSELECT 1;'}, 'bad header'),
])
def test_scan_refuses(tmp_path, files, message):
    with pytest.raises(schema_plan.MigrationError, match=message):
        schema_plan.scan_migrations(write(tmp_path, files))


def test_scan_refuses_missing_folder_and_non_utf8(tmp_path):
    with pytest.raises(schema_plan.MigrationError, match='does not exist'):
        schema_plan.scan_migrations(str(tmp_path / 'nope'))
    (tmp_path / 'V1__latin1.sql').write_bytes(b"SELECT '\xe9';")
    with pytest.raises(schema_plan.MigrationError, match='not UTF-8'):
        schema_plan.scan_migrations(str(tmp_path))


def test_checksum_ignores_line_endings_and_bom():
    assert schema_plan.checksum('A;\r\nB;\r\n') == schema_plan.checksum('A;\nB;\n') == schema_plan.checksum('\ufeffA;\nB;\n')
    assert schema_plan.checksum('A;\n') != schema_plan.checksum('A; \n')


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
def migrations(tmp_path, spec):
    """spec: {version: phase}."""
    return schema_plan.scan_migrations(write(tmp_path, dict(
        ('V%s__m%s.sql' % (v, v.replace('.', '_')), '-- phase: %s\nSELECT 1;\n' % p) for v, p in spec.items())))


def row(migration_or_version, success=True, phase=None, checksum=None):
    if isinstance(migration_or_version, schema_plan.Migration):
        m = migration_or_version
        return schema_plan.HistoryRow(m.version.text, m.description, checksum or m.checksum, phase or m.phase, success)
    return schema_plan.HistoryRow(migration_or_version, 'x', checksum, phase or 'offline', success)


def versions_of(items):
    return [m.version.text for m in items]


def test_plan_fresh_database(tmp_path):
    found = migrations(tmp_path, {'1': 'offline', '2': 'offline', '10': 'offline'})
    plan = schema_plan.make_plan(found, [])
    assert versions_of(plan.pending) == ['1', '2', '10']
    assert plan.from_version is None and plan.to_version.text == '10' and plan.kind == 'major'
    assert plan.changes


def test_plan_partial_and_target(tmp_path):
    found = migrations(tmp_path, {'6.0.50.1': 'offline', '6.0.51.1': 'offline', '6.0.51.2': 'offline'})
    history = [row(found[0])]
    plan = schema_plan.make_plan(found, history, target='6.0.51.1', major_blocks=3)
    assert versions_of(plan.pending) == ['6.0.51.1'] and plan.kind == 'major'
    assert plan.from_version.text == '6.0.50.1' and plan.to_version.text == '6.0.51.1'
    plan = schema_plan.make_plan(found, history + [row(found[1])], major_blocks=3)
    assert versions_of(plan.pending) == ['6.0.51.2'] and plan.kind == 'minor'
    nothing = schema_plan.make_plan(found, [row(m) for m in found])
    assert not nothing.pending and not nothing.changes and nothing.kind == 'none'


def test_plan_refusals(tmp_path):
    found = migrations(tmp_path, {'1': 'offline', '2': 'offline', '3': 'offline'})
    applied = [row(found[0]), row(found[1])]
    with pytest.raises(schema_plan.MigrationError, match='downgrades are refused'):
        schema_plan.make_plan(found, applied, target='1')
    with pytest.raises(schema_plan.MigrationError, match='target 7 has no migration file'):
        schema_plan.make_plan(found, applied, target='7')
    with pytest.raises(schema_plan.MigrationError, match='newer than this release'):
        schema_plan.make_plan(found[:1], applied)
    with pytest.raises(schema_plan.MigrationError, match='newer than this release'):
        schema_plan.make_plan([], applied)
    with pytest.raises(schema_plan.MigrationError, match='checksum differs.*V2__m2.sql'):
        schema_plan.make_plan(found, [row(found[0]), row(found[1], checksum='0' * 64)])
    with pytest.raises(schema_plan.MigrationError, match='repair=true'):
        schema_plan.make_plan(found, [row(found[0]), row(found[1], success=False)])
    with pytest.raises(schema_plan.MigrationError, match='out-of-order'):
        schema_plan.make_plan(found, [row(found[0]), row(found[2])])


def test_plan_repair_and_missing_old_files(tmp_path):
    found = migrations(tmp_path, {'2': 'offline', '3': 'offline'})
    history = [row('1'), row(found[0], success=False)]  # V1's file was removed after it was applied
    plan = schema_plan.make_plan(found, history, repair=True)
    assert plan.repair == ['2'] and versions_of(plan.pending) == ['2', '3']


def test_plan_baseline(tmp_path):
    found = migrations(tmp_path, {'1': 'offline', '2': 'offline', '3': 'offline'})
    plan = schema_plan.make_plan(found, [], baseline='2')
    assert plan.baseline == '2' and versions_of(plan.pending) == ['3']
    assert plan.from_version.text == '2' and plan.to_version.text == '3' and plan.kind == 'major'
    after = [row('2', phase='baseline'), row(found[2])]
    again = schema_plan.make_plan(found, after, baseline='2')
    assert not again.changes and not again.warnings and again.from_version.text == '3'
    other = schema_plan.make_plan(found, after, baseline='1.5')
    assert not other.changes and 'ignored' in other.warnings[0]
    assert schema_plan.make_plan(found, [], baseline='3', target='3').pending == []
    with pytest.raises(schema_plan.MigrationError, match='newer than this release'):
        schema_plan.make_plan(found, [], baseline='4')


def test_plan_phases(tmp_path):
    found = migrations(tmp_path, {'1': 'offline', '2': 'pre', '3': 'offline', '4': 'post'})
    with pytest.raises(schema_plan.MigrationError, match='phase offline needs.*V2__m2.sql'):
        schema_plan.make_plan(found, [], phase='offline')
    pre = schema_plan.make_plan(found, [], phase='pre')
    assert versions_of(pre.pending) == ['2'] and versions_of(pre.remaining) == ['1', '3', '4']
    assert pre.to_version is None and pre.kind == 'major'
    after_pre = [row(found[1])]
    offline = schema_plan.make_plan(found, after_pre, phase='offline')
    assert versions_of(offline.pending) == ['1', '3'] and offline.to_version.text == '3'
    with pytest.raises(schema_plan.MigrationError, match='phase post needs'):
        schema_plan.make_plan(found, after_pre, phase='post')
    post = schema_plan.make_plan(found, after_pre + [row(found[0]), row(found[2])], phase='post')
    assert versions_of(post.pending) == ['4'] and post.to_version.text == '4'
    # a post migration applied before an older offline one would be out of order
    with pytest.raises(schema_plan.MigrationError, match='out-of-order'):
        schema_plan.make_plan(found, [row(found[1]), row(found[3])], phase='all')


def test_level_after(tmp_path):
    found = migrations(tmp_path, {'1': 'offline', '2': 'offline', '3': 'offline'})
    plan = schema_plan.make_plan(found, [row(found[0])])
    assert schema_plan.level_after(found, plan, [found[1].version]).text == '2'


def test_check_statements(tmp_path):
    found = schema_plan.scan_migrations(write(tmp_path, {
        'V1__tx.sql': 'BEGIN;\nSELECT 1;\nCOMMIT;\n', 'V2__empty.sql': '-- nothing\n',
        'V3__quote.sql': "SELECT 'open;\n", 'V4__fb.sql': 'CREATE TABLE t (i int);\nCOMMIT WORK;\nINSERT INTO t VALUES (1);'}))
    with pytest.raises(schema_plan.MigrationError, match='V1__tx.sql line 1: BEGIN'):
        schema_backend.check_statements(found[:1], 'postgresql')
    schema_backend.check_statements(found[:1], 'mysql')  # passed through on MariaDB/MySQL
    with pytest.raises(schema_plan.MigrationError, match='V2__empty.sql has no SQL statement'):
        schema_backend.check_statements(found[1:2], 'sqlite')
    with pytest.raises(schema_plan.MigrationError, match='V3__quote.sql: line 1: unterminated'):
        schema_backend.check_statements(found[2:3], 'sqlite')
    schema_backend.check_statements(found[3:], 'firebird')  # a commit point
    with pytest.raises(schema_plan.MigrationError, match='own transaction'):
        schema_backend.check_statements(found[3:], 'sqlite')


@pytest.mark.parametrize('name, engine, ok', [
    ('clinops_schema_history', 'mysql', True),
    ('app.history', 'postgresql', True),
    ('app.history', 'sqlite', False),
    ('bad-name', 'postgresql', False),
    ('x; DROP TABLE y', 'sqlite', False),
    ('a' * 27, 'firebird', False),
])
def test_validate_table_name(name, engine, ok):
    assert (schema_backend.validate_table_name(name, engine) is None) is ok


def test_migration_failed_message_names_file_and_statement(tmp_path):
    found = schema_plan.scan_migrations(write(tmp_path, {'V3__bad.sql': 'SELECT 1;\n' + 'CREAT TABLE x (' + 'c int, ' * 60 + ');'}))
    statement = found[0].statements('sqlite')[1]
    error = schema_plan.MigrationFailed(found[0], statement, 'near "CREAT": syntax error')
    assert 'V3__bad.sql failed at line 2' in str(error) and 'CREAT TABLE x' in str(error) and str(error).endswith('...')


def test_parse_reported_version():
    assert schema_command.parse_reported_version(' 6\n', 'q').text == '6'
    assert schema_command.parse_reported_version('', 'q') is None
    with pytest.raises(schema_plan.MigrationError, match='version_command did not report a version'):
        schema_command.parse_reported_version('Orthanc 1.10.1 (schema 6)', 'version_command')


def test_run_tool_timeout_kills_the_group():
    rc, out, _err, timed_out = schema_command.run_tool([sys.executable, '-c', 'print("hi")'], 10)
    assert (rc, out.strip(), timed_out) == (0, 'hi', False)
    rc, _out, _err, timed_out = schema_command.run_tool([sys.executable, '-c', 'import time; time.sleep(30)'], 0.5)
    assert timed_out and rc != 0


# ---------------------------------------------------------------------------------------------
# the module on SQLite (Python's own driver: no server needed)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def sqlite_db(tmp_path):
    path = str(tmp_path / 'app.sqlite')
    sqlite3.connect(path).close()
    return path


def history(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute('SELECT version, success FROM clinops_schema_history ORDER BY applied_at, version').fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def test_module_check_apply_rerun(tmp_path, sqlite_db):
    folder = write(tmp_path / 'sql', {'V1__t.sql': 'CREATE TABLE t (a int);', 'V2__fill.sql': 'INSERT INTO t VALUES (1);'})
    args = dict(engine='sqlite', path=sqlite_db, migrations=folder)
    check = run_module(args, check=True, diff=True)
    assert check['changed'] and [p['version'] for p in check['pending']] == ['1', '2']
    assert 'INSERT INTO t VALUES (1);' in check['diff']['after']
    assert history(sqlite_db) is None
    real = run_module(args)
    assert real['changed'] and [a['version'] for a in real['applied']] == ['1', '2'] and real['transactional'] is True
    assert history(sqlite_db) == [('1', 1), ('2', 1)]
    assert run_module(args)['changed'] is False


def test_module_failure_rolls_back_migration(tmp_path, sqlite_db):
    folder = write(tmp_path / 'sql', {'V1__t.sql': 'CREATE TABLE t (a int);',
                                      'V2__bad.sql': 'INSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);'})
    res = run_module(dict(engine='sqlite', path=sqlite_db, migrations=folder))
    assert res['failed'] and 'V2__bad.sql failed at line 2' in res['msg'] and 'INSERT INTO nowhere' in res['msg']
    assert res['failed_migration']['rolled_back'] is True and res['to_version'] == '1'
    assert history(sqlite_db) == [('1', 1)]
    conn = sqlite3.connect(sqlite_db)
    assert conn.execute('SELECT count(*) FROM t').fetchone()[0] == 0
    conn.close()


@pytest.mark.parametrize('args, message', [
    (dict(engine='files', path='/tmp'), 'engine files is not supported'),
    (dict(engine='mssql', database='x'), 'engine mssql is not supported'),
    (dict(engine='sqlite', path='/tmp/x', lock_timeout=-1), 'lock_timeout'),
    (dict(engine='sqlite', path='/tmp/x', major_blocks=0), 'major_blocks'),
    (dict(engine='sqlite', path='/tmp/x', target='latest'), 'not a version'),
    (dict(engine='sqlite', path='/tmp/x', history_table='a-b'), 'not a plain SQL identifier'),
    (dict(engine='sqlite', path='/tmp/x', version_query='SELECT 1'), 'only used with command'),
])
def test_module_refuses_bad_input(tmp_path, args, message):
    res = run_module(dict(args, migrations=str(tmp_path)))
    assert res['failed'] and message in res['msg'], res


def test_module_command_mode(tmp_path, sqlite_db):
    conn = sqlite3.connect(sqlite_db)
    conn.executescript("CREATE TABLE v (x TEXT); INSERT INTO v VALUES ('1.0');")
    conn.close()
    tool = [sys.executable, '-c', "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('UPDATE v SET x = ?', (sys.argv[2],)); c.commit()", sqlite_db, '1.1']
    args = dict(engine='sqlite', path=sqlite_db, command=tool, version_query='SELECT x FROM v', target='1.1')
    check = run_module(args, check=True)
    assert check['changed'] and check['kind'] == 'minor' and check['to_version'] == '1.1'
    res = run_module(args)
    assert res['changed'] and res['from_version'] == '1.0' and res['to_version'] == '1.1' and res['rc'] == 0
    assert run_module(args)['changed'] is False
    assert run_module(dict(args, target='1.0'))['failed']


@pytest.mark.parametrize('extra, message', [
    (dict(version_query='SELECT 1', version_command='echo 1'), 'mutually exclusive'),
    ({}, 'exactly one of version_query or version_command'),
    (dict(version_query='SELECT 1', baseline='1'), 'only used with migrations'),
    (dict(version_query='SELECT 1', repair=True), 'only used with migrations'),
    (dict(version_command=['no-such-program-xyz']), 'no-such-program-xyz'),
    (dict(version_command='echo "open'), 'cannot be split'),
])
def test_module_command_mode_refuses(tmp_path, extra, message):
    res = run_module(dict(engine='files', path=str(tmp_path), command=['true'], **extra))
    assert res['failed'] and message in res['msg'], res


# ---------------------------------------------------------------------------------------------
# module_kwargs() and run() with an AnsibleModule-like object, as another module runs them in-process
# ---------------------------------------------------------------------------------------------
class Done(BaseException):
    """What an in-process caller's fail_json/exit_json raise: not an Exception, like SystemExit."""


class LikeModule:
    """Only the attributes run() may use; any other attribute is recorded in ``unexpected``."""

    __slots__ = ('params', 'check_mode', '_diff', 'warnings', 'unexpected', 'calls')

    def __init__(self, args, check=False, diff=False):
        spec = schema_module.module_kwargs()['argument_spec']
        self.params = dict((name, option.get('default')) for name, option in spec.items())
        self.params.update(args)
        self.check_mode = check
        self._diff = diff
        self.warnings = []
        self.unexpected = []
        self.calls = []

    def __getattr__(self, name):
        if name == 'host_run':  # the one optional attribute (command mode on a Windows host): absent here
            raise AttributeError(name)
        self.unexpected.append(name)
        raise AttributeError(name)

    def fail_json(self, msg, **kwargs):
        self.calls.append('fail_json')
        raise Done(dict(kwargs, msg=msg, failed=True))

    def exit_json(self, **kwargs):
        self.calls.append('exit_json')
        raise Done(kwargs)

    def warn(self, warning):
        self.warnings.append(warning)

    def run_command(self, args, check_rc=False):
        assert isinstance(args, list) and not check_rc
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors='replace',
                              check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        path = shutil.which(arg, path=os.pathsep.join(list(opt_dirs or []) + [os.environ.get('PATH', '')]))
        if path is None and required:
            self.fail_json(msg='Failed to find required executable "%s"' % arg)
        return path


def run_like(args, check=False, diff=False):
    module = LikeModule(args, check=check, diff=diff)
    with pytest.raises(Done) as caught:
        schema_module.run(module)
    assert module.unexpected == [] and len(module.calls) == 1, (module.unexpected, module.calls)
    return caught.value.args[0], module


def without_durations(result):
    result = dict(result)
    result['applied'] = [dict((k, v) for k, v in entry.items() if k != 'duration_s') for entry in result['applied']]
    return result


def test_module_kwargs_is_new_on_every_call():
    first = schema_module.module_kwargs()
    assert set(first) == {'argument_spec', 'mutually_exclusive', 'required_one_of', 'supports_check_mode'}
    assert first['supports_check_mode'] is True and first['required_one_of'] == [('migrations', 'command')]
    assert first['argument_spec']['engine']['required'] is True and first['argument_spec']['login_password']['no_log']
    first['argument_spec']['phase']['choices'].append('sometime')
    first['mutually_exclusive'].append(('target', 'baseline'))
    second = schema_module.module_kwargs()
    assert second['argument_spec']['phase']['choices'] == ['all', 'pre', 'offline', 'post']
    assert second['mutually_exclusive'] == [('migrations', 'command'), ('version_query', 'version_command')]


def _version_tool(tmp_path, version):
    """A command that writes ``version`` into the file that version_command reads."""
    path = str(tmp_path / 'version.txt')
    return [sys.executable, '-c', "import sys; open(sys.argv[1], 'w').write(sys.argv[2] + '\\n')", path, version]


# Each case: the files, the args (from the database and the folder), and the runs (check, diff) in order.
SAME_CASES = {
    'check, apply, rerun': (
        {'V1__t.sql': 'CREATE TABLE t (a int);', 'V2__fill.sql': '-- phase: post\nINSERT INTO t VALUES (1);'},
        lambda db, sql, tmp: dict(engine='sqlite', path=db, migrations=sql),
        [(True, True), (False, True), (False, False)]),
    'one phase, run twice': (
        {'V1__t.sql': '-- phase: pre\nCREATE TABLE t (a int);', 'V2__u.sql': 'CREATE TABLE u (a int);'},
        lambda db, sql, tmp: dict(engine='sqlite', path=db, migrations=sql, phase='pre', major_blocks=2),
        [(False, False), (False, False)]),
    'failure rolled back, then refused input': (
        {'V1__t.sql': 'CREATE TABLE t (a int);', 'V2__bad.sql': 'INSERT INTO t VALUES (1);\nINSERT INTO nowhere VALUES (2);'},
        lambda db, sql, tmp: dict(engine='sqlite', path=db, migrations=sql),
        [(False, False), (True, True)]),
    'refused before the database is opened': (
        {'V1__t.sql': 'CREATE TABLE t (a int);'},
        lambda db, sql, tmp: dict(engine='sqlite', path=db, migrations=sql, history_table='a-b'),
        [(False, False)]),
    'command mode with version_command': (
        {},
        lambda db, sql, tmp: dict(engine='files', path=db, command=_version_tool(tmp, '2.1'),
                                  version_command='cat %s' % (tmp / 'version.txt'), target='2.1'),
        [(True, False), (False, False), (False, False)]),
    'command mode that misses its target': (
        {},
        lambda db, sql, tmp: dict(engine='files', path=db, command=_version_tool(tmp, '2.0'),
                                  version_command='cat %s' % (tmp / 'version.txt'), target='2.1'),
        [(False, False)]),
}


@pytest.mark.parametrize('case', sorted(SAME_CASES))
def test_run_with_a_like_module_matches_ansible_module(tmp_path, case):
    files, make_args, runs = SAME_CASES[case]

    def fresh():
        db = tmp_path / 'app.sqlite'
        if db.exists():
            db.unlink()
        sqlite3.connect(str(db)).close()
        shutil.rmtree(str(tmp_path / 'sql'), ignore_errors=True)
        folder = write(tmp_path / 'sql', files)
        (tmp_path / 'version.txt').write_text('1.0\n')
        return make_args(str(db), folder, tmp_path)

    args = fresh()
    expected = [without_durations(run_module(args, check=check, diff=diff)) for check, diff in runs]
    expected_history = history(str(tmp_path / 'app.sqlite'))
    args = fresh()
    got = [without_durations(run_like(args, check=check, diff=diff)[0]) for check, diff in runs]
    assert got == expected
    assert history(str(tmp_path / 'app.sqlite')) == expected_history
    assert any(r.get('changed') or r.get('failed') for r in got)


def test_run_with_a_like_module_warns_through_it(tmp_path, sqlite_db):
    folder = write(tmp_path / 'sql', {'V1__t.sql': 'CREATE TABLE t (a int);'})
    args = dict(engine='sqlite', path=sqlite_db, migrations=folder)
    assert run_like(args)[0]['changed']
    result, module = run_like(dict(args, baseline='0.5'))
    assert not result['changed'] and module.warnings == ['baseline 0.5 is ignored: the history already has 1 entries']
    tool = dict(engine='files', path=str(tmp_path), command=['true'], version_command=['/bin/echo', '3'])
    result, module = run_like(tool, check=True)
    assert not result['changed'] and result['from_version'] == '3'
    assert module.warnings == ['check mode cannot predict what the command changes without target']


def test_run_with_a_like_module_fails_through_get_bin_path(tmp_path):
    result, _module = run_like(dict(engine='files', path=str(tmp_path), command=['true'],
                                    version_command='no-such-program-xyz --version'))
    assert result == {'msg': 'Failed to find required executable "no-such-program-xyz"', 'failed': True}


def test_no_handler_can_swallow_fail_json_or_exit_json():
    """fail_json/exit_json may raise any BaseException: no bare except, no except BaseException, no sys.exit."""
    tree = ast.parse(''.join(inspect.getsource(m) for m in SCHEMA_MODULES))
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            names = [n.id for n in ast.walk(node.type) if isinstance(n, ast.Name)] if node.type is not None else None
            assert names is not None, 'bare except at line %d' % node.lineno
            assert 'BaseException' not in names and 'SystemExit' not in names, node.lineno
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            assert (node.value.id, node.attr) != ('sys', 'exit'), node.lineno


class HostModule(LikeModule):
    """A module object whose programs run on a (Windows) host: ``host_run`` is called, nothing runs here."""

    __slots__ = ('ran', 'answers')

    def __init__(self, args, answers, check=False):
        super().__init__(args, check=check)
        self.ran = []
        self.answers = list(answers)

    def host_run(self, argv, timeout, cwd=None):
        self.ran.append((list(argv), timeout, cwd))
        return self.answers.pop(0)

    def run_command(self, args, check_rc=False):
        raise AssertionError('run_command on the controller: %s' % args)

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        raise AssertionError('get_bin_path on the controller: %s' % arg)


def test_command_mode_runs_its_programs_through_host_run_when_the_module_offers_it():
    """The vendor's tool (with command_timeout), version_command and sqlcmd all go to host_run, unresolved (the host's
    own program search); the versions before and after decide as on POSIX; a second run at the target runs no tool."""
    args = dict(engine='files', path='C:/ConAktiv/Server Database', command=['ca_admin.exe', 'structure-update'],
                version_command=['ca_admin.exe', 'data-version'], target='2.0', command_timeout=30)
    module = HostModule(args, [(0, '1.0\n', '', False), (0, 'done', '', False), (0, '2.0\n', '', False)])
    with pytest.raises(Done) as caught:
        schema_module.run(module)
    result = caught.value.args[0]
    assert module.unexpected == [] and not result.get('failed'), result
    assert [r[0] for r in module.ran] == [['ca_admin.exe', 'data-version'], ['ca_admin.exe', 'structure-update'],
                                          ['ca_admin.exe', 'data-version']]
    assert module.ran[1][1] == 30
    assert result['changed'] and [a['version'] for a in result['applied']] == ['2.0']

    again = HostModule(args, [(0, '2.0\n', '', False)])
    with pytest.raises(Done) as caught:
        schema_module.run(again)
    assert [r[0] for r in again.ran] == [['ca_admin.exe', 'data-version']] and caught.value.args[0]['changed'] is False

    timed = HostModule(args, [(0, '1.0\n', '', False), (None, '', '', True), (0, '1.0\n', '', False)])
    with pytest.raises(Done) as caught:
        schema_module.run(timed)
    assert caught.value.args[0]['failed'] and 'killed after command_timeout (30s)' in caught.value.args[0]['msg']

    sql = dict(engine='mssql', database='imageserver', login_host='sql1', command=['Setup.exe', '/upgrade'],
               version_query='SELECT MAX(Version) FROM DatabaseVersion', target='2.0')
    asked = HostModule(sql, [(0, '1.0\n', '', False), (0, '', '', False), (0, '2.0\n', '', False)])
    with pytest.raises(Done) as caught:
        schema_module.run(asked)
    assert not caught.value.args[0].get('failed'), caught.value.args[0]
    first = asked.ran[0][0]
    assert first[0] == 'sqlcmd' and '-E' in first and first[-1].endswith('SELECT MAX(Version) FROM DatabaseVersion')
