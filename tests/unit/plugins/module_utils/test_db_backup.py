"""Unit tests for db_backup's pure helpers and the table inventory added to database.py."""
from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import os
import sqlite3
import sys

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import database
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import common as backup_common
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import engine as backup_engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import mssql as backup_mssql
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import mysql as backup_mysql
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import postgresql as backup_postgresql
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import streams as backup_streams


# --- names -------------------------------------------------------------------------------------

@pytest.mark.parametrize('template, label, ext, expected', [
    (None, 'pre-4.2', '.dump', 'postgresql_pmod_pre-4.2_20250131T120000Z.dump'),
    (None, None, '.dump', 'postgresql_pmod_20250131T120000Z.dump'),
    ('{database}-{label}-{timestamp}', None, '.sql.gz', 'pmod-20250131T120000Z.sql.gz'),
    ('{database}.{label}', 'x', '.dump', 'pmod.x.dump'),
    ('{engine}/{timestamp}', None, '.dump', None),
    ('{database}', 'x', '.dump', None),
    ('{nope}-{timestamp}', None, '.dump', None),
    ('.{timestamp}', None, '.dump', None),
    ('{timestamp}.dump', None, '.dump', '20250131T120000Z.dump'),
    ('{label}', 'a b/c', '.dump', 'a_b_c.dump'),
])
def test_render_name(template, label, ext, expected):
    if expected is None:
        with pytest.raises(backup_common.BackupError):
            backup_common.render_name(template, 'postgresql', 'pmod', label, '20250131T120000Z', ext)
    else:
        assert backup_common.render_name(template, 'postgresql', 'pmod', label, '20250131T120000Z', ext) == expected


@pytest.mark.parametrize('value, expected', [
    ('pmod', 'pmod'), ('my db', 'my_db'), ('../etc', '_etc'), ('..', '_'), ('ümlaut', '_mlaut'),
])
def test_safe_component(value, expected):
    assert backup_common.safe_component(value) == expected


@pytest.mark.parametrize('engine, fmt, compression, ext', [
    ('postgresql', 'custom', 'gzip', '.dump'),
    ('postgresql', 'custom', 'none', '.dump'),
    ('postgresql', 'custom', 'zstd', '.dump.zst'),
    ('postgresql', 'directory', 'gzip', '.dir'),
    ('mysql', 'sql', 'gzip', '.sql.gz'),
    ('mysql', 'sql', 'none', '.sql'),
    ('sqlite', 'sqlite', 'zstd', '.sqlite.zst'),
    ('firebird', 'gbak', 'none', '.fbk'),
    ('files', 'tar', 'gzip', '.tar.gz'),
    ('mssql', 'bak', 'gzip', '.bak'),
])
def test_backup_extension(engine, fmt, compression, ext):
    assert backup_common.backup_extension(engine, fmt, compression) == ext


@pytest.mark.parametrize('engine, fmt, compression, expected', [
    ('postgresql', None, None, ('custom', 'gzip')),
    ('mysql', None, None, ('sql', 'none')),
    ('postgresql', 'directory', 'none', ('directory', 'none')),
    ('postgresql', 'sql', None, 'format sql does not apply to engine postgresql'),
    ('mssql', None, 'zstd', 'engine mssql compresses'),
    ('files', None, 'zstd', ('tar', 'zstd')),
])
def test_resolve_format_and_compression(engine, fmt, compression, expected):
    if isinstance(expected, str):
        with pytest.raises(backup_common.BackupError, match=expected):
            f = backup_common.resolve_format(engine, fmt)
            backup_common.resolve_compression(engine, f, compression)
    else:
        f = backup_common.resolve_format(engine, fmt)
        assert (f, backup_common.resolve_compression(engine, f, compression)) == expected


# --- retention, manifests ---------------------------------------------------------------------

def _m(name, created):
    return dict(backup_path='/b/' + name, created_at=created)


@pytest.mark.parametrize('keep, expected', [
    (None, []),
    (1, ['c', 'b', 'a']),
    (2, ['b', 'a']),
    (3, ['a']),
    (4, []),
    (10, []),
])
def test_select_for_retention(keep, expected):
    existing = [_m('a', '2025-01-01'), _m('c', '2025-01-03'), _m('b', '2025-01-02')]
    new = _m('new', '9999')
    doomed = backup_common.select_for_retention(existing + [new], keep, '/b/new')
    assert [d['backup_path'][3:] for d in doomed] == expected


def test_retention_never_deletes_the_new_backup_even_with_an_odd_clock():
    existing = [_m('future', '2099-01-01'), _m('new', '2000-01-01')]
    doomed = backup_common.select_for_retention(existing, 1, '/b/new')
    assert [d['backup_path'] for d in doomed] == ['/b/future']


@pytest.mark.parametrize('expected, actual, problems', [
    ({'a': 1}, {'a': 1}, []),
    ({'a': 1}, {'a': 2}, ['table a has 2 rows in the restored copy, 1 in the source']),
    ({'a': 1, 'b': 0}, {'a': 1}, ['table b is missing from the restored copy']),
    ({}, {'x': 3}, ['table x is in the restored copy but not in the source']),
])
def test_compare_row_counts(expected, actual, problems):
    assert backup_common.compare_row_counts(expected, actual) == problems


def _write_manifest(folder, file_name, **fields):
    manifest = backup_common.build_manifest('postgresql', 'pmod', 'pmod', fields.pop('label', None), fields.pop('fmt', 'custom'),
                                            fields.pop('compression', 'gzip'), file_name, 3, 'abc', '15.1', {}, 100,
                                            fields.pop('created_at', '2025-01-01T00:00:00+00:00'), 'stream')
    manifest.update(fields)
    with open(os.path.join(folder, file_name + backup_common.MANIFEST_SUFFIX), 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    return manifest


def test_build_manifest_fields():
    manifest = backup_common.build_manifest('mysql', 'c', 'c', 'l', 'sql', 'gzip', 'f.sql.gz', 10, 'aa', '10.11', {'mariadb-dump': 'v'},
                                            99, 'now', 'stream', row_counts={'t': 1}, extra=dict(entries=3))
    for key in ('engine', 'database', 'server_version', 'size', 'sha256', 'tool_versions', 'label', 'created_at',
                'verification', 'row_counts', 'entries', 'checksum_method'):
        assert key in manifest
    assert manifest['manifest_version'] == backup_common.MANIFEST_VERSION
    assert json.loads(json.dumps(manifest)) == manifest


def test_load_and_match_manifests(tmp_path):
    folder = str(tmp_path)
    _write_manifest(folder, 'a.dump', label='pre', created_at='2025-01-01')
    _write_manifest(folder, 'b.dump', label='pre', created_at='2025-01-02')
    _write_manifest(folder, 'c.dump', label='other', created_at='2025-01-03')
    _write_manifest(folder, 'd.dir', label='pre', fmt='directory', created_at='2025-01-04')
    _write_manifest(folder, '.tmp.dump', label='pre')  # a temporary name: ignored
    with open(os.path.join(folder, 'broken.dump.manifest.json'), 'w', encoding='utf-8') as handle:
        handle.write('{not json')
    with open(os.path.join(folder, 'renamed.dump.manifest.json'), 'w', encoding='utf-8') as handle:
        json.dump(dict(manifest_version=1, file='other.dump'), handle)
    found = backup_common.load_manifests(folder)
    assert sorted(os.path.basename(m['backup_path']) for m in found) == ['a.dump', 'b.dump', 'c.dump', 'd.dir']
    same = backup_common.matching_manifests(found, 'postgresql', 'pmod', 'pre', 'custom', 'gzip', label_required=True)
    assert [os.path.basename(m['backup_path']) for m in same] == ['b.dump', 'a.dump']
    assert len(backup_common.matching_manifests(found, 'postgresql', 'pmod')) == 4
    assert backup_common.matching_manifests(found, 'mysql', 'pmod') == []
    assert backup_common.load_manifests(str(tmp_path / 'missing')) == []


# --- "newest": the manifest's creation time, then the name's -N suffix ------------------------------

SECOND = '2025-03-01T10:00:00+00:00'
SECOND_NS = 1740823200 * 10 ** 9


def _old(name, created_at=SECOND, **fields):
    """A manifest as written before ``created_ns`` existed: ``created_at`` to the second only."""
    manifest = dict(backup_path='/b/' + name, file=name, engine='sqlite', source='/srv/app.db', label='pre',
                    format='sqlite', compression='none', created_at=created_at)
    manifest.update(fields)
    return manifest


def _newest_first_everywhere(manifests):
    """The newest-first order as restore/label reuse (matching_manifests) and retention see it, for every input order."""
    orders = set()
    for ordering in itertools.permutations(manifests):
        matched = backup_common.matching_manifests(list(ordering), 'sqlite', '/srv/app.db', 'pre', label_required=True)
        orders.add(tuple(m['file'] for m in matched))
        # retention with keep=1 deletes every other backup, newest first (the protected one is not in the list)
        doomed = backup_common.select_for_retention(list(ordering), 1, '/b/just-taken.sqlite')
        orders.add(tuple(m['file'] for m in doomed))
    assert len(orders) == 1, orders
    return list(orders.pop())


@pytest.mark.parametrize('names', [
    ['sqlite_app_pre_20250301T100000Z.sqlite', 'sqlite_app_pre_20250301T100000Z-2.sqlite'],
    ['x_20250301T100000Z.sqlite.gz', 'x_20250301T100000Z-2.sqlite.gz', 'x_20250301T100000Z-3.sqlite.gz'],
    ['x_TS.sqlite', 'x_TS-2.sqlite', 'x_TS-9.sqlite', 'x_TS-10.sqlite', 'x_TS-11.sqlite'],
    ['pg.dir', 'pg-2.dir', 'pg-10.dir'],
    # a name that itself ends in -<digits> (name template {label}, label v-3)
    ['v-3.sqlite', 'v-3-2.sqlite', 'v-3-9.sqlite', 'v-3-10.sqlite'],
])
def test_same_second_old_manifests_newest_is_the_highest_suffix(names):
    """Manifests with created_at to the second only: within one second, -2 is newer than none, -10 than -9."""
    assert _newest_first_everywhere([_old(name) for name in names]) == names[::-1]


def test_created_ns_orders_backups_of_one_second():
    """created_ns decides within a second, whatever the names say; created_at decides across seconds."""
    manifests = [
        _old('b_TS.sqlite', created_ns=SECOND_NS + 200000000),
        _old('a_TS.sqlite', created_ns=SECOND_NS + 700000000),
        _old('c_TS-2.sqlite', created_ns=SECOND_NS + 100000000),
        _old('c_TS.sqlite', created_ns=SECOND_NS + 600000000),
        _old('z_TS.sqlite', created_at='2025-03-01T09:59:59+00:00', created_ns=(SECOND_NS - 10 ** 9) + 999999000),
    ]
    assert _newest_first_everywhere(manifests) == ['a_TS.sqlite', 'c_TS.sqlite', 'b_TS.sqlite', 'c_TS-2.sqlite',
                                                   'z_TS.sqlite']


def test_old_and_new_manifests_together():
    """An old manifest (no created_ns) counts as the start of its second; the suffix breaks an exact tie."""
    manifests = [
        _old('x_TS.sqlite'),                                               # old, 10:00:00
        _old('x_TS-2.sqlite', created_ns=SECOND_NS + 1000),               # new, 10:00:00.000001
        _old('x_TS-3.sqlite'),                                             # old, 10:00:00 again
        _old('y_TS.sqlite', created_at='2025-03-01T10:00:01+00:00'),      # old, the next second
        _old('w_TS.sqlite', created_ns=SECOND_NS - 1),                     # new, the second before
        _old('u_TS.sqlite', created_at=None),                              # no time at all: the oldest
        _old('t_TS.sqlite', created_at='not a time'),                      # unreadable: as old as no time
    ]
    assert _newest_first_everywhere(manifests) == ['y_TS.sqlite', 'x_TS-2.sqlite', 'x_TS-3.sqlite', 'x_TS.sqlite',
                                                   'w_TS.sqlite', 'u_TS.sqlite', 't_TS.sqlite']


@pytest.mark.parametrize('fields, expected', [
    (dict(created_at=SECOND), SECOND_NS),
    (dict(created_at='2025-03-01T10:00:00Z'), SECOND_NS),
    (dict(created_at='2025-03-01T11:00:00+01:00'), SECOND_NS),
    (dict(created_at='2025-03-01T10:00:00'), SECOND_NS),  # naive: taken as UTC
    (dict(created_at='2025-03-01T10:00:00.250000+00:00'), SECOND_NS + 250000000),
    (dict(created_at='2025-03-01'), SECOND_NS - 10 * 3600 * 10 ** 9),
    (dict(created_at=SECOND, created_ns=SECOND_NS + 5), SECOND_NS + 5),
    (dict(created_at=SECOND, created_ns='1740823200000000005'), SECOND_NS),  # not an integer: created_at
    (dict(created_at=SECOND, created_ns=True), SECOND_NS),
    (dict(created_at='9999'), None),
    (dict(created_at=''), None),
    (dict(), None),
])
def test_manifest_created_ns(fields, expected):
    assert backup_common.manifest_created_ns(fields) == expected


@pytest.mark.parametrize('name, expected', [
    ('x_20250301T100000Z.dump', ('x_20250301T100000Z', 1)),
    ('x_20250301T100000Z-2.dump', ('x_20250301T100000Z', 2)),
    ('x_20250301T100000Z-10.sql.gz', ('x_20250301T100000Z', 10)),
    ('x-12.tar.zst', ('x', 12)),
    ('pre-4.2-3.dir', ('pre-4.2', 3)),
    ('v-3.sqlite', ('v', 3)),
    ('v-3-2.sqlite', ('v-3', 2)),
    ('-2.dump', ('-2', 1)),
    ('odd-name', ('odd-name', 1)),
    ('odd-7', ('odd', 7)),
])
def test_name_counter(name, expected):
    assert backup_common.name_counter(name) == expected


def test_new_manifests_record_created_ns_in_step_with_created_at(tmp_path):
    moment = datetime.datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    assert backup_common.epoch_ns(moment) == SECOND_NS + 123456000
    assert backup_common.epoch_ns(moment.replace(tzinfo=None)) == SECOND_NS + 123456000
    assert backup_common.iso_now(moment) == SECOND and backup_common.utc_timestamp(moment) == '20250301T100000Z'
    manifest = backup_common.build_manifest('sqlite', 'app', '/srv/app.db', None, 'sqlite', 'none', 'f.sqlite', 1, 'aa', '3', {}, 1,
                                            backup_common.iso_now(moment), 'stream', created_ns=backup_common.epoch_ns(moment))
    assert manifest['created_ns'] == SECOND_NS + 123456000 and manifest['created_at'] == SECOND
    assert 'created_ns' not in backup_common.build_manifest('sqlite', 'app', '/srv/app.db', None, 'sqlite', 'none', 'f.sqlite', 1,
                                                            'aa', '3', {}, 1, SECOND, 'stream')
    # through a file and load_manifests, as restore and label reuse read them
    _write_manifest(str(tmp_path), 'a_TS.dump', created_at=SECOND, created_ns=SECOND_NS + 900)
    _write_manifest(str(tmp_path), 'a_TS-2.dump', created_at=SECOND, created_ns=SECOND_NS + 500)
    _write_manifest(str(tmp_path), 'a_TS-3.dump', created_at=SECOND)
    found = backup_common.matching_manifests(backup_common.load_manifests(str(tmp_path)), 'postgresql', 'pmod')
    assert [os.path.basename(m['backup_path']) for m in found] == ['a_TS.dump', 'a_TS-2.dump', 'a_TS-3.dump']


def test_check_checksum_file_and_folder(tmp_path):
    path = tmp_path / 'x.dump'
    path.write_bytes(b'hello world')
    manifest = dict(size=11, sha256=hashlib.sha256(b'hello world').hexdigest())
    assert backup_streams.check_checksum(manifest, str(path)) is None
    path.write_bytes(b'hello World')
    assert 'damaged' in backup_streams.check_checksum(manifest, str(path))
    path.write_bytes(b'hello')
    assert 'truncated' in backup_streams.check_checksum(manifest, str(path))
    assert 'missing' in backup_streams.check_checksum(manifest, str(tmp_path / 'nope'))

    folder = tmp_path / 'd.dir'
    folder.mkdir()
    (folder / 'toc.dat').write_bytes(b'toc')
    (folder / '1.dat.gz').write_bytes(b'data')
    files, digest, size = backup_streams.hash_tree(str(folder))
    assert size == 7 and sorted(files) == ['1.dat.gz', 'toc.dat']
    manifest = dict(files=files, sha256=digest)
    assert backup_streams.check_checksum(manifest, str(folder)) is None
    (folder / 'extra').write_bytes(b'')
    assert 'not in its manifest' in backup_streams.check_checksum(manifest, str(folder))
    os.unlink(str(folder / 'extra'))
    (folder / 'toc.dat').write_bytes(b'tod')
    assert 'damaged' in backup_streams.check_checksum(manifest, str(folder))


# --- secrets in files --------------------------------------------------------------------------

@pytest.mark.parametrize('password, line', [
    ('simple', '*:*:*:*:simple\n'),
    ('a:b\\c', '*:*:*:*:a\\:b\\\\c\n'),
])
def test_pgpass_line(password, line):
    assert backup_postgresql.pgpass_line(password) == line


def test_pgpass_line_refuses_line_break():
    with pytest.raises(backup_common.BackupError, match='line break'):
        backup_postgresql.pgpass_line('a\nb')


@pytest.mark.parametrize('value, quoted', [
    ('pw', '"pw"'),
    ('p"w', "'p\"w'"),
    ('a\\b', '"a\\\\b"'),
    ('p"\'w', '"p"\'w"'),
    ('p"\'#w', None),
    ('a\nb', None),
])
def test_mysql_option_value(value, quoted):
    if quoted is None:
        with pytest.raises(backup_common.BackupError):
            backup_mysql.mysql_option_value(value)
    else:
        assert backup_mysql.mysql_option_value(value) == quoted


def test_mysql_option_file_tcp_and_socket():
    text = backup_mysql.mysql_option_file(dict(login_user='u', login_password='p', login_host='127.0.0.1', login_port=3307,
                                               connect_timeout=5))
    assert text.startswith('[client]\n') and 'password="p"' in text and 'port=3307' in text and 'protocol=tcp' in text
    assert '[mysql]\nconnect-timeout=5' in text
    text = backup_mysql.mysql_option_file(dict(login_unix_socket='/run/m.sock'))
    assert 'socket="/run/m.sock"' in text and 'protocol=socket' in text and 'password' not in text


def test_secret_files_are_private_and_removed(tmp_path):
    files = backup_streams.SecretFiles(str(tmp_path))
    path = files.write('pgpass', 'secret')
    assert os.stat(files.folder).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    files.cleanup()
    assert not os.path.exists(files.folder)


@pytest.mark.parametrize('name, conninfo', [
    ('pmod', "dbname='pmod'"),
    ("it's", "dbname='it\\'s'"),
    ('a=b', "dbname='a=b'"),
])
def test_pg_conninfo(name, conninfo):
    assert backup_postgresql.pg_conninfo(name) == conninfo


# --- SQL Server statements (SQL Server cannot run here; these are what sqlcmd would get) -------

@pytest.mark.parametrize('database, path, compression, label, expected', [
    ('ImageServer', '/var/opt/mssql/backup/is.bak', 'none', None,
     "BACKUP DATABASE [ImageServer] TO DISK = N'/var/opt/mssql/backup/is.bak' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT,"
     " NO_COMPRESSION"),
    ('Image]Server', "C:\\b\\o'neil.bak", 'gzip', 'pre',
     "BACKUP DATABASE [Image]]Server] TO DISK = N'C:\\b\\o''neil.bak' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT,"
     " COMPRESSION, NAME = N'pre'"),
])
def test_mssql_backup_statement(database, path, compression, label, expected):
    assert backup_mssql.mssql_backup_statement(database, path, compression, label) == expected


def test_mssql_verify_and_restore_statements():
    assert backup_mssql.mssql_verify_statement("/b/x'.bak") == "RESTORE VERIFYONLY FROM DISK = N'/b/x''.bak' WITH CHECKSUM"
    assert backup_mssql.mssql_filelist_statement('/b/x.bak') == "SET NOCOUNT ON; RESTORE FILELISTONLY FROM DISK = N'/b/x.bak'"
    moves = backup_mssql.mssql_moves([('IS_Data', 'D:\\data\\IS.mdf'), ('IS_Log', 'D:\\log\\IS_log.ldf')], 'IS_copy')
    assert moves == {'IS_Data': 'D:\\data\\IS_copy_0.mdf', 'IS_Log': 'D:\\log\\IS_copy_1.ldf'}
    assert backup_mssql.mssql_restore_statement('IS_copy', '/b/x.bak', moves) == (
        "RESTORE DATABASE [IS_copy] FROM DISK = N'/b/x.bak' WITH CHECKSUM, REPLACE, RECOVERY,"
        " MOVE N'IS_Data' TO N'D:\\data\\IS_copy_0.mdf', MOVE N'IS_Log' TO N'D:\\log\\IS_copy_1.ldf'")
    assert backup_mssql.mssql_restore_statement('IS', '/b/x.bak') == (
        "RESTORE DATABASE [IS] FROM DISK = N'/b/x.bak' WITH CHECKSUM, REPLACE, RECOVERY")
    drop = backup_mssql.mssql_drop_statement('IS_copy')
    assert "DB_ID(N'IS_copy')" in drop and 'SET SINGLE_USER WITH ROLLBACK IMMEDIATE' in drop and 'DROP DATABASE [IS_copy]' in drop
    assert "DB_ID(N'IS')" in backup_mssql.mssql_size_query('IS')
    assert backup_mssql.mssql_row_count_query('IS]x').startswith('SET NOCOUNT ON; USE [IS]]x]; SELECT ')
    assert 'sys.partitions' in backup_mssql.mssql_row_count_query('IS')


def test_mssql_rollback_statement_ends_sessions_and_always_returns_to_multi_user():
    assert backup_mssql.mssql_replace_statement("Image]Server's", "D:\\b\\pre.bak") == (
        "IF DB_ID(N'Image]Server''s') IS NOT NULL ALTER DATABASE [Image]]Server's] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; "
        "BEGIN TRY RESTORE DATABASE [Image]]Server's] FROM DISK = N'D:\\b\\pre.bak' WITH CHECKSUM, REPLACE, RECOVERY; END TRY "
        "BEGIN CATCH IF DB_ID(N'Image]Server''s') IS NOT NULL ALTER DATABASE [Image]]Server's] SET MULTI_USER; THROW; END CATCH; "
        "ALTER DATABASE [Image]]Server's] SET MULTI_USER")


@pytest.mark.parametrize('database, words', [
    ('', 'must not be empty'),
    ('a' * 129, 'longer than 128'),
    ('pmod\nGO', 'control character'),
    (' pmod', 'starts or ends with a space'),
])
def test_mssql_statements_refuse_unsafe_names(database, words):
    with pytest.raises(backup_common.BackupError, match=words):
        backup_mssql.mssql_backup_statement(database, '/b/x.bak', 'none')
    with pytest.raises(backup_common.BackupError, match=words):
        backup_mssql.mssql_replace_statement(database, '/b/x.bak')


def test_mssql_statements_refuse_a_path_with_a_line_break():
    with pytest.raises(backup_common.BackupError, match="control character"):
        backup_mssql.mssql_verify_statement('/b/x\r\n.bak')


def test_mssql_engine_sqlcmd_argv_and_env(monkeypatch):
    """The exact command line and environment the engine gives sqlcmd (the pipeline is replaced by a recorder)."""
    seen = []

    def recorder(cmds, stdin=None, sink=None, env=None):
        seen.append((cmds, env))
        sink(b'16.0.4135.4\n')
        return [('sqlcmd', 0, '')]

    monkeypatch.setattr(backup_engine, 'run_pipeline', recorder)
    monkeypatch.setenv('SQLCMDINI', '/tmp/evil.sql')
    monkeypatch.setenv('SQLCMDPASSWORD', 'inherited')
    params = dict(engine='mssql', database='IS', login_host='db1', login_port=14330, login_user='sa', login_password='pw!',
                  login_instance=None, connect_timeout=7)
    engine = backup_mssql.MssqlEngine(None, params, 'bak', 'none')
    engine.bins['sqlcmd'] = '/opt/mssql-tools18/bin/sqlcmd'
    assert engine.sqlcmd('SELECT 1') == ['16.0.4135.4']
    cmds, env = seen[0]
    assert cmds == [['/opt/mssql-tools18/bin/sqlcmd', '-U', 'sa', '-S', 'tcp:db1,14330', '-d', 'master', '-b', '-h', '-1', '-W',
                     '-s', '|', '-x', '-l', '7', '-Q', 'SELECT 1']]
    assert env['SQLCMDPASSWORD'] == 'pw!' and 'SQLCMDINI' not in env
    windows = backup_mssql.MssqlEngine(None, dict(params, login_user=None, login_password=None, login_port=None,
                                                  login_instance='SQLEXPRESS'), 'bak', 'none')
    windows.bins['sqlcmd'] = 'sqlcmd'
    windows.sqlcmd('SELECT 1')
    cmds, env = seen[1]
    assert cmds[0][:4] == ['sqlcmd', '-E', '-S', 'tcp:db1\\SQLEXPRESS'] and 'SQLCMDPASSWORD' not in env


# --- streaming ---------------------------------------------------------------------------------

def test_run_pipeline_hashes_what_it_writes(tmp_path):
    out = tmp_path / 'out'
    with open(str(out), 'wb') as handle:
        writer = backup_streams.HashingWriter(handle)
        results = backup_streams.run_pipeline([[sys.executable, '-c', 'import sys; sys.stdout.write("x" * 3000000)'],
                                              ['gzip', '-c']], sink=writer)
    assert [r[1] for r in results] == [0, 0]
    data = out.read_bytes()
    assert writer.size == len(data) and writer.hexdigest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize('results, patterns, expected', [
    ([('pg_dump', 0, ''), ('zstd', 0, '')], (), None),
    ([('pg_dump', 1, 'pg_dump: error: x'), ('zstd', 0, '')], (), 'pg_dump exited with 1'),
    ([('pg_dump', 0, 'pg_dump: error: query failed'), ('zstd', 0, '')], (r'(?m)^pg_dump: error:',),
     'pg_dump exited 0 but reported an error'),
    ([('mariadb-dump', -13, ''), ('gzip', 1, 'gzip: disk full')], (), 'gzip exited with 1'),
    ([('zstd', -13, ''), ('pg_restore', 0, '')], (), None),
    ([('zstd', 0, ''), ('pg_restore', -13, '')], (), 'pg_restore exited with -13'),
])
def test_pipeline_failure(results, patterns, expected):
    message = backup_streams.pipeline_failure(results, patterns)
    if expected is None:
        assert message is None
    else:
        assert message.startswith(expected)


def test_pipeline_kills_everything_when_the_sink_fails(tmp_path):
    def sink(_chunk):
        raise OSError(28, 'No space left on device')

    with pytest.raises(OSError):
        backup_streams.run_pipeline([[sys.executable, '-c', 'import sys\nwhile True: sys.stdout.write("y" * 65536)']], sink=sink)


@pytest.mark.parametrize('mode, expected', [(0o600, 0o700), (0o640, 0o750), (0o644, 0o755), (0o200, 0o200)])
def test_mode_for_directory(mode, expected):
    assert backup_common.mode_for_directory(mode) == expected


def test_scratch_name_is_short_and_unique():
    names = {backup_common.scratch_name('x' * 100) for _attempt in range(20)}
    assert len(names) == 20 and all(len(n) <= 63 for n in names)


# --- database.py additions, on SQLite -------------------------------------------------------

def test_table_inventory_on_sqlite(tmp_path):
    conn = sqlite3.connect(str(tmp_path / 'a.db'))
    conn.execute('CREATE TABLE "we""ird" (id INTEGER PRIMARY KEY AUTOINCREMENT)')
    conn.execute('CREATE TABLE plain (v TEXT)')
    conn.execute('CREATE VIEW v AS SELECT * FROM plain')
    conn.executemany('INSERT INTO plain VALUES (?)', [('a',), ('b',)])
    conn.execute('INSERT INTO "we""ird" DEFAULT VALUES')
    conn.commit()
    assert database.list_tables(conn, 'sqlite') == ['plain', 'we"ird']
    assert database.table_row_counts(conn, 'sqlite') == {'plain': 2, 'we"ird': 1}
    assert database.database_size(conn, 'sqlite') == os.path.getsize(str(tmp_path / 'a.db'))
    assert database.database_size(conn, 'files') is None


@pytest.mark.parametrize('engine, name, quoted', [
    ('postgresql', 'a"b', '"a""b"'), ('mysql', 'a`b', '`a``b`'), ('mssql', 'a]b', '[a]]b]'), ('firebird', 'T', '"T"'),
])
def test_quote_identifier(engine, name, quoted):
    assert database.quote_identifier(engine, name) == quoted
