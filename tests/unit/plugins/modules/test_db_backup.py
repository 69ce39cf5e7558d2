"""Unit tests for the db_backup module: option validation and whole runs of main() without a server.

SQLite runs for real (it needs no server).  SQL Server cannot run here: a stand-in ``sqlcmd`` records the
statements the module sends and writes the file BACKUP DATABASE would write.
"""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import textwrap

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.modules import db_backup
from ansible_collections.clinops.upgrade.plugins.module_utils.db_backup import BackupError


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patched_exits(monkeypatch):
    def exit_json(self, **kwargs):
        kwargs.setdefault('changed', False)
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(db_backup.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(db_backup.AnsibleModule, 'fail_json', fail_json)


def run_module(args, check=False):
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as info:
            db_backup.main()
    return info.value.args[0]


def full_params(**kwargs):
    params = dict(engine='postgresql', database='pmod', login_host=None, login_port=None, login_user=None,
                  login_password=None, login_unix_socket=None, path=None, connect_timeout=10, state='present',
                  dest='/backups', name=None, format=None, compression=None, jobs=1, label=None, verify='quick',
                  keep=None, mode='0600', owner=None, group=None, backup=None, target_database=None, bin_dir=None)
    params.update(kwargs)
    return params


@pytest.mark.parametrize('kwargs, expected', [
    (dict(), dict(format='custom', compression='gzip', mode=0o600)),
    (dict(format='directory', jobs=4, compression='none', mode='640'), dict(format='directory', compression='none', mode=0o640)),
    (dict(engine='mysql', compression='zstd', mode=0o600), dict(format='sql', compression='zstd', mode=0o600)),
    (dict(engine='sqlite', database=None, path='/x.db'), dict(format='sqlite', compression='none', mode=0o600)),
    (dict(dest=None), 'state present needs dest'),
    (dict(state='restored', dest=None), 'state restored needs backup, or dest'),
    (dict(backup='/b/x.dump'), 'backup applies to state restored only'),
    (dict(target_database='x'), 'target_database applies to state restored only'),
    (dict(jobs=2), 'jobs 2 needs engine postgresql with format directory'),
    (dict(jobs=0), 'jobs must be 1 or more'),
    (dict(keep=0), 'keep must be 1 or more'),
    (dict(label='  '), 'label must not be empty'),
    (dict(mode='rw-r--r--'), 'mode'),
    (dict(mode='17777'), 'out of range'),
    (dict(format='tar'), 'format tar does not apply to engine postgresql'),
    (dict(engine='firebird', database='KSAMU'), 'engine firebird needs path'),
    (dict(engine='sqlite', database=None), 'engine sqlite needs path'),
    (dict(name='{db}-{timestamp}'), 'unknown field {db}'),
    (dict(name='fixed'), 'needs {timestamp} or {label}'),
    (dict(engine='mssql', compression='zstd'), 'engine mssql compresses'),
])
def test_validate_options(kwargs, expected):
    params = full_params(**kwargs)
    if isinstance(expected, str):
        with pytest.raises(BackupError, match=expected.replace('{', r'\{').replace('}', r'\}')):
            db_backup.validate_options(params)
    else:
        assert db_backup.validate_options(params) == expected


@pytest.mark.parametrize('params, expected', [
    (dict(engine='postgresql', database='pmod', path=None), 'pmod'),
    (dict(engine='sqlite', database=None, path='/srv/app/main.db'), 'main'),
    (dict(engine='firebird', database=None, path='/srv/KSAMU.FDB'), 'KSAMU'),
    (dict(engine='files', database=None, path='/opt/derby/'), 'derby'),
])
def test_display_name(params, expected):
    assert db_backup.display_name(params) == expected


@pytest.mark.parametrize('args, words', [
    (dict(engine='postgresql', database='x'), 'state present needs dest'),
    (dict(engine='nosuch', database='x', dest='/tmp'), 'value of engine must be one of'),
    (dict(engine='sqlite', path='/x.db', dest='/tmp', owner='no-such-user-here'), 'owner no-such-user-here does not exist'),
    (dict(engine='sqlite', path='/x.db', dest='/tmp', verify='sometimes'), 'value of verify must be one of'),
])
def test_main_refuses_bad_input(args, words):
    result = run_module(args)
    assert result['failed'] and words in result['msg']


@pytest.fixture
def sqlite_source(tmp_path):
    path = str(tmp_path / 'app.db')
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)')
    conn.executemany('INSERT INTO t (v) VALUES (?)', [('row %d' % i,) for i in range(500)])
    conn.commit()
    conn.close()
    return path


def test_sqlite_check_mode_then_backup_then_reuse_and_keep(tmp_path, sqlite_source):
    dest = str(tmp_path / 'dest')
    args = dict(engine='sqlite', path=sqlite_source, dest=dest, label='pre', verify='restore', keep=1, mode='0640')
    predicted = run_module(args, check=True)
    assert predicted['changed'] and predicted['space_ok'] and not os.path.exists(dest)
    assert predicted['estimated_size'] == os.path.getsize(sqlite_source)

    result = run_module(args)
    assert result['changed'] and result['verified'] and not result['reused']
    assert result['row_counts'] == {'t': 500}
    assert stat.S_IMODE(os.stat(result['backup_path']).st_mode) == 0o640
    with open(result['backup_path'] + '.manifest.json', encoding='utf-8') as handle:
        manifest = json.load(handle)
    assert manifest['label'] == 'pre' and manifest['verification']['ok']
    assert sorted(os.listdir(dest)) == sorted([os.path.basename(result['backup_path']),
                                               os.path.basename(result['backup_path']) + '.manifest.json'])

    again = run_module(args)
    assert not again['changed'] and again['reused'] and again['backup_path'] == result['backup_path']

    other = run_module(dict(args, label='second'))
    assert other['changed'] and other['deleted'] == [result['backup_path']]
    assert not os.path.exists(result['backup_path'])
    assert len(os.listdir(dest)) == 2


def test_sqlite_restore_refuses_damaged_backup(tmp_path, sqlite_source):
    dest = str(tmp_path / 'dest')
    result = run_module(dict(engine='sqlite', path=sqlite_source, dest=dest))
    with open(result['backup_path'], 'r+b') as handle:
        handle.seek(2000)
        handle.write(b'\x00\xff')
    target = str(tmp_path / 'restored.db')
    refused = run_module(dict(engine='sqlite', path=sqlite_source, backup=result['backup_path'], state='restored',
                              target_database=target))
    assert refused['failed'] and 'damaged' in refused['msg'] and not os.path.exists(target)


FAKE_SQLCMD = textwrap.dedent('''\
    #!/bin/sh
    # stand-in for sqlcmd: log the statement, answer the queries db_backup sends
    while [ $# -gt 0 ]; do
      if [ "$1" = "-Q" ]; then shift; stmt="$1"; fi
      shift
    done
    printf '%s\\n' "$stmt" >> "$(dirname "$0")/statements.log"
    env | grep -q '^SQLCMDPASSWORD=' && echo "password-in-env" >> "$(dirname "$0")/statements.log"
    case "$stmt" in
      *ProductVersion*) echo "16.0.4135.4" ;;
      *master_files*) echo "1048576" ;;
      BACKUP*) path=$(printf '%s' "$stmt" | sed -e "s/.*TO DISK = N'\\([^']*\\)'.*/\\1/"); printf 'MSSQL-BACKUP' > "$path" ;;
      RESTORE\\ VERIFYONLY*) echo "The backup set on file 1 is valid." ;;
    esac
    exit 0
''')


def test_mssql_runs_backup_then_verifyonly(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    fake = bindir / 'sqlcmd'
    fake.write_text(FAKE_SQLCMD)
    fake.chmod(0o755)
    dest = str(tmp_path / 'dest')
    result = run_module(dict(engine='mssql', database='ImageServer', login_host='127.0.0.1', login_user='sa',
                             login_password='S3cret!', dest=dest, bin_dir=str(bindir), label='pre'))
    assert result.get('changed'), result
    statements = (bindir / 'statements.log').read_text().splitlines()
    backup = [s for s in statements if s.startswith('BACKUP DATABASE [ImageServer] TO DISK')]
    assert backup and 'WITH COPY_ONLY, CHECKSUM' in backup[0] and '.tmp' in backup[0]
    assert any(s.startswith("RESTORE VERIFYONLY FROM DISK = N'%s" % dest) for s in statements)
    assert 'password-in-env' in statements and not any('S3cret!' in s for s in statements)
    assert result['manifest']['server_version'] == '16.0.4135.4'
    assert result['manifest']['checksum_method'].startswith('read once')
    with open(result['backup_path'], 'rb') as handle:
        assert handle.read() == b'MSSQL-BACKUP'
    assert not any(name.startswith('.') for name in os.listdir(dest))
