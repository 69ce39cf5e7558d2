"""Unit tests for the db_backup module: option validation and whole runs without a server.

The module's logic lives in ``module_utils/backup/`` (``module.py``: ``module_kwargs()`` and ``run(module)``), so that
another module can run it in its own process; these tests run it there, with a real ``AnsibleModule`` and with
a minimal ``AnsibleModule``-like object whose exits raise a ``BaseException``, and check that the module
file's ``main()`` is only that wiring.

SQLite runs for real (it needs no server).  SQL Server cannot run here: a stand-in ``sqlcmd`` records the
statements the module sends and writes the file BACKUP DATABASE would write.
"""
from __future__ import annotations

import datetime
import grp
import inspect
import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import textwrap

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils.backup import common as backup_common
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as backup_module
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import runner as backup_runner
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError


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

    monkeypatch.setattr(AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(AnsibleModule, 'fail_json', fail_json)


def run_module(args, check=False):
    """What the module file's main() does: ``run(AnsibleModule(**module_kwargs()))``."""
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as info:
            backup_module.run(AnsibleModule(**backup_module.module_kwargs()))
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
            backup_module.validate_options(params)
    else:
        assert backup_module.validate_options(params) == expected


@pytest.mark.parametrize('params, expected', [
    (dict(engine='postgresql', database='pmod', path=None), 'pmod'),
    (dict(engine='sqlite', database=None, path='/srv/app/main.db'), 'main'),
    (dict(engine='firebird', database=None, path='/srv/KSAMU.FDB'), 'KSAMU'),
    (dict(engine='files', database=None, path='/opt/derby/'), 'derby'),
])
def test_display_name(params, expected):
    assert backup_runner.display_name(params) == expected


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


class SameSecondClock:
    """What db_backup sees as its ``datetime`` module, with a clock that stays within one second.

    Every reading of ``datetime.datetime.now`` is 1 ms after the one before, all within 2025-03-01 10:00:00 UTC:
    two runs "within the same second" on any machine, however slow, with the sub-second order of the real clock.
    Everything else is the real ``datetime`` module.
    """

    def __init__(self):
        self.readings = 0
        clock = self

        class Datetime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                clock.readings += 1
                assert clock.readings < 1000, 'the clock would leave its second'
                moment = datetime.datetime(2025, 3, 1, 10, 0, 0, clock.readings * 1000, tzinfo=datetime.timezone.utc)
                return moment.astimezone(tz) if tz else moment.replace(tzinfo=None)

        self.datetime = Datetime

    def __getattr__(self, name):
        return getattr(datetime, name)


def test_two_backups_in_one_second_the_second_is_the_newest(tmp_path, sqlite_source, monkeypatch):
    """Restore without backup= and retention take the -2 backup of a second as newer than the first one."""
    monkeypatch.setattr(backup_common, 'datetime', SameSecondClock())
    dest = str(tmp_path / 'dest')
    args = dict(engine='sqlite', path=sqlite_source, dest=dest)
    first = run_module(args)
    conn = sqlite3.connect(sqlite_source)
    conn.execute("UPDATE t SET v = 'changed after the first backup' WHERE id = 1")
    conn.execute("INSERT INTO t (v) VALUES ('added after the first backup')")
    conn.commit()
    conn.close()
    second = run_module(args)
    assert first['changed'] and second['changed'], (first, second)
    assert os.path.basename(first['backup_path']) == 'sqlite_app_20250301T100000Z.sqlite'
    assert os.path.basename(second['backup_path']) == 'sqlite_app_20250301T100000Z-2.sqlite'
    assert first['manifest']['created_at'] == second['manifest']['created_at'] == '2025-03-01T10:00:00+00:00'

    target = str(tmp_path / 'restored.db')
    restored = run_module(dict(args, state='restored', target_database=target))
    assert restored.get('changed'), restored
    assert restored['backup_path'] == second['backup_path'] and restored['row_counts'] == {'t': 501}
    conn = sqlite3.connect(target)
    try:
        assert conn.execute('SELECT v FROM t WHERE id = 1').fetchone() == ('changed after the first backup',)
    finally:
        conn.close()

    # retention, in the same second: keep=2 keeps the -3 just taken and the -2, and deletes the first
    third = run_module(dict(args, keep=2))
    assert os.path.basename(third['backup_path']) == 'sqlite_app_20250301T100000Z-3.sqlite'
    assert third['deleted'] == [first['backup_path']]
    assert sorted(os.listdir(dest)) == sorted(os.path.basename(r['backup_path']) + suffix for r in (second, third)
                                              for suffix in ('', '.manifest.json'))
    # the order comes from the manifests' sub-second creation time
    assert first['manifest']['created_ns'] < second['manifest']['created_ns'] < third['manifest']['created_ns']


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


# --------------------------------------------------------------------------------------------
# module_kwargs() and run(module) for callers that run db_backup inside their own process

def test_module_kwargs_are_ansible_module_arguments():
    kwargs = backup_module.module_kwargs()
    assert set(kwargs) <= set(inspect.signature(AnsibleModule.__init__).parameters) - {'self'}
    assert kwargs['supports_check_mode'] is True
    spec = kwargs['argument_spec']
    assert spec['login_password']['no_log'] is True and spec['state']['choices'] == ['present', 'restored']
    # a new dict on every call: what one caller changes does not reach the next
    spec['state']['choices'].append('absent')
    del spec['dest']
    fresh = backup_module.module_kwargs()
    assert 'dest' in fresh['argument_spec'] and fresh['argument_spec']['state']['choices'] == ['present', 'restored']
    with patch_module_args(dict(engine='sqlite', path='/x.db', dest='/tmp')):
        module = AnsibleModule(**fresh)
    assert (module.params['state'], module.params['verify'], module.params['mode'], module.params['jobs']) == (
        'present', 'quick', '0600', 1)


def test_module_main_runs_module_kwargs_and_run(tmp_path, sqlite_source):
    from ansible_collections.clinops.upgrade.plugins.modules import db_backup as module_file
    dest = str(tmp_path / 'dest')
    with patch_module_args(dict(engine='sqlite', path=sqlite_source, dest=dest, label='main')):
        with pytest.raises(ExitJson) as info:
            module_file.main()
    result = info.value.args[0]
    assert result['changed'] and result['verified'] and os.path.basename(result['backup_path']).startswith('sqlite_app_main_')
    with patch_module_args(dict(engine='sqlite', path=sqlite_source, dest=dest, keep=0)):
        with pytest.raises(FailJson) as info:
            module_file.main()
    assert info.value.args[0]['msg'] == 'keep must be 1 or more (the backup just taken is always kept)'


class ModuleExit(BaseException):
    """What an in-process caller's exit_json/fail_json raise: derived from BaseException, not from Exception."""

    def __init__(self, result):
        super().__init__(result)
        self.result = result


ALLOWED = ('params', 'check_mode', '_diff', 'fail_json', 'exit_json', 'warn', 'run_command', 'get_bin_path',
           'tmpdir', 'atomic_move', 'no_log_values', 'add_cleanup_file')
# set only by an in-process caller that carries the files and programs elsewhere (the Windows host); absent: local
OPTIONAL = ('backup_io',)


class MinimalModule:
    """An AnsibleModule-like object with only the attributes run() may use; it records a lookup of any other.

    The test's own bookkeeping lives in ``t_*`` attributes, which run() has no reason to touch.
    """

    def __init__(self, args, tmpdir, check_mode=False):
        kwargs = backup_module.module_kwargs()
        validator = ArgumentSpecValidator(**dict((k, v) for k, v in kwargs.items() if k != 'supports_check_mode'))
        validated = validator.validate(args)
        assert validated.error_messages == []
        self.params = validated.validated_parameters
        self.check_mode = check_mode
        self._diff = False
        self.tmpdir = tmpdir
        self.no_log_values = set()
        self.t_warnings = []
        self.t_commands = []
        self.t_other = []

    def __getattr__(self, name):
        if not name.startswith('t_') and name not in OPTIONAL:
            self.t_other.append(name)
        raise AttributeError(name)

    def fail_json(self, msg, **kwargs):
        raise ModuleExit(dict(kwargs, msg=msg, failed=True))

    def exit_json(self, **kwargs):
        raise ModuleExit(kwargs)

    def warn(self, warning):
        self.t_warnings.append(warning)

    def get_bin_path(self, arg, required=False, opt_dirs=None):
        assert not required and not opt_dirs
        return shutil.which(arg)

    def run_command(self, args, **kwargs):
        assert not kwargs
        self.t_commands.append(args)
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


def run_minimal(args, tmp_path, check_mode=False, prepare=None):
    tmpdir = tmp_path / 'module-tmp'
    tmpdir.mkdir(exist_ok=True)
    module = MinimalModule(args, str(tmpdir), check_mode)
    if prepare:
        prepare(module)
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ModuleExit) as info:
        backup_module.run(module)
    assert signal.getsignal(signal.SIGTERM) is handler  # run() puts the caller's SIGTERM handler back
    assert module.t_other == [], 'run() used module attributes outside the allowed set: %s' % module.t_other
    assert set(module.__dict__) - {'t_warnings', 't_commands', 't_other'} <= set(ALLOWED)
    assert os.listdir(str(tmpdir)) == []  # no password folder left behind
    return info.value.result, module


def test_run_with_a_minimal_module_object_several_times_in_one_process(tmp_path, sqlite_source):
    dest = str(tmp_path / 'dest')
    args = dict(engine='sqlite', path=sqlite_source, dest=dest, label='pre', verify='restore', compression='gzip',
                mode='0640', owner=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name)

    predicted, _module = run_minimal(args, tmp_path, check_mode=True)
    assert predicted['changed'] and predicted['space_ok'] and predicted['backup_path'].endswith('.sqlite.gz')
    assert not os.path.exists(dest)

    first, module = run_minimal(args, tmp_path)
    assert first['changed'] and first['verified'] and not first['reused'] and first['row_counts'] == {'t': 500}
    assert [os.path.basename(cmd[0]) for cmd in module.t_commands] == ['gzip']
    assert first['manifest']['tool_versions']['gzip'].startswith('gzip')
    st = os.stat(first['backup_path'])
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, os.getuid(), os.getgid())
    # the same keys as a run through a real AnsibleModule
    real = run_module(dict(args, dest=str(tmp_path / 'real')))
    assert set(first) == set(real) and set(first['manifest']) == set(real['manifest'])

    again, module = run_minimal(args, tmp_path)
    assert again['changed'] is False and again['reused'] and again['backup_path'] == first['backup_path']
    assert module.t_warnings == [] and again['rejected'] == []

    with open(first['backup_path'], 'r+b') as handle:
        handle.seek(100)
        handle.write(b'\x00\xff\x00')
    third, module = run_minimal(args, tmp_path)
    assert third['changed'] and third['backup_path'] != first['backup_path']
    assert [r['backup_path'] for r in third['rejected']] == [first['backup_path']]
    assert len(module.t_warnings) == 1 and 'is not reused' in module.t_warnings[0]

    target = str(tmp_path / 'restored.db')
    restored, _module = run_minimal(dict(engine='sqlite', path=sqlite_source, backup=third['backup_path'], state='restored',
                                         target_database=target), tmp_path)
    assert restored.get('changed'), restored
    assert restored['backup_path'] == third['backup_path'] and restored['row_counts'] == {'t': 500}
    assert sorted(name for name in os.listdir(dest) if name.startswith('.')) == []


def test_run_reports_bad_input_through_fail_json(tmp_path, sqlite_source):
    result, _module = run_minimal(dict(engine='sqlite', path=sqlite_source, dest=str(tmp_path / 'd'), keep=0), tmp_path)
    assert result == dict(msg='keep must be 1 or more (the backup just taken is always kept)', failed=True)
    result, _module = run_minimal(dict(engine='sqlite', path=str(tmp_path / 'nope.db'), dest=str(tmp_path / 'd')), tmp_path)
    assert result['failed'] and result['msg'] == 'SQLite database %s does not exist' % (tmp_path / 'nope.db')
    assert 'changed' not in result and result['reused'] is False and isinstance(result['duration_s'], float)


def test_an_exit_raised_inside_run_passes_through(tmp_path, sqlite_source):
    """An exit_json/fail_json deep inside a run (here from run_command) is neither caught nor rewritten."""
    dest = str(tmp_path / 'dest')

    def prepare(module):
        def run_command(args, **_kwargs):
            module.fail_json(msg='cannot start %s' % args[0], rc=2)
        module.run_command = run_command

    result, _module = run_minimal(dict(engine='sqlite', path=sqlite_source, dest=dest, compression='gzip'), tmp_path,
                                  prepare=prepare)
    assert result == dict(msg='cannot start %s' % shutil.which('gzip'), rc=2, failed=True)
    assert os.listdir(dest) == []


# --------------------------------------------------------------------------------------------
# the file attribute helpers behave like AnsibleModule.set_*_if_different

@pytest.fixture
def real_module():
    with patch_module_args({}):
        return AnsibleModule(argument_spec={})


def twins(tmp_path, kind):
    """Two equal paths of ``kind`` (file, folder, link to a file) with mode 0600; yields (path, link target)."""
    out = []
    for side in ('ansible', 'ours'):
        path = str(tmp_path / side)
        target = None
        if kind == 'folder':
            os.mkdir(path)
        else:
            target = path + '.target' if kind == 'link' else path
            with open(target, 'w', encoding='utf-8') as handle:
                handle.write('x')
            if kind == 'link':
                os.symlink(target, path)
        os.chmod(target or path, 0o600)
        out.append((path, target))
    return out


def attributes(path, target):
    st = os.lstat(path)
    seen = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if target and target != path:
        tst = os.stat(target)
        seen += (stat.S_IMODE(tst.st_mode), tst.st_uid, tst.st_gid)
    return seen


@pytest.mark.parametrize('kind', ['file', 'folder', 'link'])
@pytest.mark.parametrize('mode', [0o600, 0o640, 0o755, 0o4700])
def test_set_mode_like_ansible_module(tmp_path, real_module, kind, mode):
    (theirs, their_target), (ours, our_target) = twins(tmp_path, kind)
    real_module.set_mode_if_different(theirs, mode, False)
    backup_runner.set_mode_if_different(real_module, ours, mode)
    assert attributes(ours, our_target) == attributes(theirs, their_target)
    if kind != 'link':
        assert stat.S_IMODE(os.lstat(ours).st_mode) == mode


@pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another user needs root')
@pytest.mark.parametrize('kind', ['file', 'link'])
@pytest.mark.parametrize('owner, group', [('4242', '4343'), ('root', 'root'), ('nobody', 'nogroup')])
def test_set_owner_and_group_like_ansible_module(tmp_path, real_module, kind, owner, group):
    (theirs, their_target), (ours, our_target) = twins(tmp_path, kind)
    real_module.set_owner_if_different(theirs, owner, False)
    real_module.set_group_if_different(theirs, group, False)
    backup_runner.set_owner_if_different(real_module, ours, owner)
    backup_runner.set_group_if_different(real_module, ours, group)
    assert attributes(ours, our_target) == attributes(theirs, their_target)
    uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    assert os.lstat(ours).st_uid == uid


@pytest.mark.parametrize('what, value', [
    ('owner', 'no-such-user-here'),
    ('group', 'no-such-group-here'),
    ('mode', 1 << 40),  # os.chmod raises OverflowError, which AnsibleModule reports as "chmod failed"
])
def test_attribute_failures_like_ansible_module(tmp_path, real_module, what, value):
    theirs = getattr(real_module, 'set_%s_if_different' % what)
    ours = getattr(backup_runner, 'set_%s_if_different' % what)
    path = str(tmp_path / 'f')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('x')
    with pytest.raises(FailJson) as their_failure:
        theirs(path, value, False)
    with pytest.raises(FailJson) as our_failure:
        ours(real_module, path, value)
    assert our_failure.value.args[0] == their_failure.value.args[0]
    assert our_failure.value.args[0]['msg'].startswith('ch')
    missing = str(tmp_path / 'missing')
    with pytest.raises(FileNotFoundError):
        theirs(missing, value if what != 'mode' else 0o640, False)
    with pytest.raises(FileNotFoundError):
        ours(real_module, missing, value if what != 'mode' else 0o640)
