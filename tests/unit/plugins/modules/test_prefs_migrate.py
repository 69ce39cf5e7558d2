# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import hashlib
import json
import os
import stat
from unittest import mock

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import common as prefs_common
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import merge as prefs_merge
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import migration as prefs_migration
from ansible_collections.clinops.upgrade.plugins.modules import prefs_migrate as prefs_migrate_module

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    import contextlib

    @contextlib.contextmanager
    def patch_module_args(args):
        with mock.patch.object(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode()):
            yield


class Exit(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class Fail(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def _exit(self, **kwargs):
    raise Exit(kwargs)


def _fail(self, **kwargs):
    raise Fail(kwargs)


def run(args, check=False, diff=False, fail=False):
    args = dict(args)
    args['_ansible_check_mode'] = check
    args['_ansible_diff'] = diff
    with patch_module_args(args), mock.patch.object(basic.AnsibleModule, 'exit_json', _exit), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', _fail):
        with pytest.raises(Fail if fail else Exit) as info:
            prefs_migration.run(basic.AnsibleModule(**prefs_migration.module_kwargs()))
    return info.value.result


def write(path, data, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(data if isinstance(data, bytes) else data.encode('latin-1'))
    if mode is not None:
        os.chmod(path, mode)


def read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def snapshot(root):
    """Every path below root with its type, mode and content hash."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest = hashlib.sha256(read(path)).hexdigest() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), digest)
    return out


@pytest.fixture
def roots(tmp_path):
    src, dest = tmp_path / 'old', tmp_path / 'new'
    write(str(src / 'Server Database/Preferences/backup.xml'), b'<backup><interval>6</interval></backup>')
    write(str(src / 'Server Database/cert.pem'), b'-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n', 0o644)
    write(str(src / 'Server Database/key.pem'), b'-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n', 0o600)
    write(str(src / 'conf/server.properties'), b'# old\r\nport=9090\r\ndb.password=geheim\r\nlegacy=1\r\n')
    write(str(dest / 'Server Database/Preferences/backup.xml'), b'<backup><interval>24</interval></backup>')
    write(str(dest / 'conf/server.properties'), b'# new\r\nport=8080\r\ndb.password=\r\nfresh=1\r\n')
    return dict(src=str(src), dest=str(dest), backup_dir=str(tmp_path / 'backup'))


ITEMS = [dict(path='Server Database/Preferences'), dict(path='Server Database/*.pem'),
         dict(path='conf/*.properties', mode='merge')]


def test_copy_merge_backup_and_rerun(roots):
    args = dict(roots, items=ITEMS)
    before = snapshot(roots['dest'])
    result = run(args, check=True, diff=True)
    assert result['changed'] is True
    assert snapshot(roots['dest']) == before
    assert not os.path.exists(roots['backup_dir'])
    assert 'SECRETKEY' not in json.dumps(result['diff']) and 'geheim' not in json.dumps(result['diff'])

    result = run(args)
    assert result['changed'] is True
    assert sorted(result['copied']) == ['Server Database/Preferences/backup.xml', 'Server Database/cert.pem', 'Server Database/key.pem']
    assert result['merged'] == [dict(path='conf/server.properties', format='properties', keys=['port', 'db.password'],
                                     added=['fresh'], changed=True)]
    assert result['dropped_keys'] == {'conf/server.properties': ['legacy']}
    dest = roots['dest']
    assert read(os.path.join(dest, 'conf/server.properties')) == b'# new\r\nport=9090\r\ndb.password=geheim\r\nfresh=1\r\n'
    assert read(os.path.join(dest, 'Server Database/Preferences/backup.xml')) == b'<backup><interval>6</interval></backup>'
    assert stat.S_IMODE(os.stat(os.path.join(dest, 'Server Database/key.pem')).st_mode) == 0o600
    # the replaced files are in the backup, the manifest lists what was created
    backup = result['backup_dir']
    assert backup == roots['backup_dir']
    assert read(os.path.join(backup, 'Server Database/Preferences/backup.xml')) == b'<backup><interval>24</interval></backup>'
    assert read(os.path.join(backup, 'conf/server.properties')) == b'# new\r\nport=8080\r\ndb.password=\r\nfresh=1\r\n'
    manifest = json.loads(read(os.path.join(backup, prefs_migration.MANIFEST)))
    assert sorted(manifest['created']) == ['Server Database/cert.pem', 'Server Database/key.pem']
    assert not [n for n in os.listdir(os.path.join(dest, 'conf')) if n.endswith('.prefs_migrate')]

    after = snapshot(dest)
    again = run(dict(args, backup_dir=None))
    assert again['changed'] is False
    assert again['copied'] == [] and again['backup_dir'] is None
    assert snapshot(dest) == after


def test_rerun_compares_size_and_mtime_before_hashing(roots):
    args = dict(roots, items=[dict(path='Server Database')])
    run(args)
    with mock.patch.object(prefs_migration, 'sha256_file', side_effect=AssertionError('hashed')):
        assert run(args)['changed'] is False


def test_same_size_other_mtime_is_hashed(roots):
    args = dict(roots, items=[dict(path='Server Database/cert.pem')])
    run(args)
    target = os.path.join(roots['dest'], 'Server Database/cert.pem')
    os.utime(target, (1, 1))
    write(target, read(target).replace(b'AAA', b'BBB'))
    result = run(dict(args, backup_dir=roots['backup_dir'] + '2'))
    assert result['copied'] == ['Server Database/cert.pem']
    assert b'AAA' in read(target)


def test_mode_only_difference_is_fixed(roots):
    args = dict(roots, items=[dict(path='Server Database/key.pem')])
    run(args)
    target = os.path.join(roots['dest'], 'Server Database/key.pem')
    os.chmod(target, 0o644)
    result = run(dict(args, backup_dir=roots['backup_dir'] + '2'))
    assert result['changed'] is True
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_defaults_tell_customised_from_stale(roots, tmp_path):
    defaults = tmp_path / 'pristine'
    write(str(defaults / 'conf/server.properties'), b'port=9090\r\ndb.password=\r\nlegacy=1\r\n')
    result = run(dict(roots, defaults=str(defaults), items=[dict(path='conf', mode='merge')]))
    assert result['merged'][0]['keys'] == ['db.password']  # port=9090 was the old default: the new one wins
    assert read(os.path.join(roots['dest'], 'conf/server.properties')) == b'# new\r\nport=8080\r\ndb.password=geheim\r\nfresh=1\r\n'


def test_keep_wins_when_last(roots):
    items = [dict(path='conf', mode='copy'), dict(path='conf/server.properties', mode='keep')]
    result = run(dict(roots, items=items))
    assert result['kept'] == ['conf/server.properties'] and result['changed'] is False


def test_missing_and_required(roots):
    result = run(dict(roots, items=[dict(path='nope/*.ini')]))
    assert result['missing'] == ['nope/*.ini'] and result['changed'] is False
    before = snapshot(roots['dest'])
    result = run(dict(roots, items=ITEMS + [dict(path='nope', required=True)]), fail=True)
    assert 'required' in result['msg'] and 'nope' in result['msg']
    assert snapshot(roots['dest']) == before


@pytest.mark.parametrize('case', ['src-missing', 'dest-missing', 'dest-in-src', 'same', 'backup-in-dest', 'abs-item', 'dotdot-item'])
def test_bad_input_fails_before_writing(roots, tmp_path, case):
    args = dict(roots, items=ITEMS)
    if case == 'src-missing':
        args['src'] = str(tmp_path / 'absent')
    elif case == 'dest-missing':
        args['dest'] = str(tmp_path / 'absent')
    elif case == 'dest-in-src':
        os.makedirs(os.path.join(roots['src'], 'inner'))
        args['dest'] = os.path.join(roots['src'], 'inner')
    elif case == 'same':
        args['dest'] = roots['src'] + '/.'
    elif case == 'backup-in-dest':
        args['backup_dir'] = os.path.join(roots['dest'], 'bk')
    elif case == 'abs-item':
        args['items'] = [dict(path='/etc/passwd')]
    elif case == 'dotdot-item':
        args['items'] = [dict(path='conf/../../etc')]
    before = snapshot(str(tmp_path))
    result = run(args, fail=True)
    assert result['msg']
    assert snapshot(str(tmp_path)) == before


def test_malformed_properties_fails_before_writing(roots, tmp_path):
    write(os.path.join(roots['src'], 'conf/server.properties'), b'port=\\u12G4\n')
    before = snapshot(str(tmp_path))
    result = run(dict(roots, items=ITEMS), fail=True)
    assert 'malformed' in result['msg'] and 'server.properties' in result['msg']
    assert snapshot(str(tmp_path)) == before


def test_symlink_escaping_src_refused(roots, tmp_path):
    write(str(tmp_path / 'outside/secret.txt'), b'x')
    os.symlink(str(tmp_path / 'outside/secret.txt'), os.path.join(roots['src'], 'Server Database/Preferences/link.txt'))
    result = run(dict(roots, items=ITEMS), fail=True)
    assert 'outside' in result['msg']
    assert not os.path.exists(os.path.join(roots['dest'], 'Server Database/cert.pem'))


def test_symlink_inside_root_copied_as_symlink(roots):
    prefs_dir = os.path.join(roots['src'], 'Server Database/Preferences')
    os.symlink('backup.xml', os.path.join(prefs_dir, 'alias.xml'))
    os.symlink(os.path.join(roots['src'], 'Server Database/cert.pem'), os.path.join(prefs_dir, 'cert-abs.pem'))
    os.symlink('..', os.path.join(prefs_dir, 'up'))  # a folder link inside: recreated, never descended
    result = run(dict(roots, items=ITEMS), check=True)
    assert result['changed'] is True and not os.path.lexists(os.path.join(roots['dest'], 'Server Database/Preferences/alias.xml'))
    result = run(dict(roots, items=ITEMS))
    dest_prefs = os.path.join(roots['dest'], 'Server Database/Preferences')
    for name in ('alias.xml', 'cert-abs.pem', 'up'):
        assert 'Server Database/Preferences/' + name in result['copied']
        assert os.path.islink(os.path.join(dest_prefs, name))
    assert os.readlink(os.path.join(dest_prefs, 'alias.xml')) == 'backup.xml'
    # an absolute link into the old installation would lead out of the new one: recreated relative
    assert os.readlink(os.path.join(dest_prefs, 'cert-abs.pem')) == '../cert.pem'
    assert os.path.realpath(os.path.join(dest_prefs, 'cert-abs.pem')) == os.path.realpath(os.path.join(roots['dest'], 'Server Database/cert.pem'))
    assert os.readlink(os.path.join(dest_prefs, 'up')) == '..'
    assert not [p for p in result['copied'] if '/up/' in p]
    again = run(dict(roots, items=ITEMS, backup_dir=roots['backup_dir'] + '2'))
    assert again['changed'] is False


def test_item_through_an_inside_folder_link_is_read(roots):
    """conf -> settings inside src: the item conf/*.properties names files through it; they are carried as files."""
    os.rename(os.path.join(roots['src'], 'conf'), os.path.join(roots['src'], 'settings'))
    os.symlink('settings', os.path.join(roots['src'], 'conf'))
    result = run(dict(roots, items=[dict(path='conf/*.properties', mode='merge')]))
    assert result['merged'][0]['path'] == 'conf/server.properties' and result['changed'] is True
    assert b'port=9090' in read(os.path.join(roots['dest'], 'conf/server.properties'))
    assert not os.path.islink(os.path.join(roots['dest'], 'conf'))


def test_merge_reads_an_inside_link_and_keeps_the_new_file(roots):
    conf = os.path.join(roots['src'], 'conf')
    os.rename(os.path.join(conf, 'server.properties'), os.path.join(conf, 'site.properties'))
    os.symlink('site.properties', os.path.join(conf, 'server.properties'))
    result = run(dict(roots, items=[dict(path='conf/server.properties', mode='merge')]))
    assert result['merged'][0]['keys'] == ['port', 'db.password']
    target = os.path.join(roots['dest'], 'conf/server.properties')
    assert not os.path.islink(target) and read(target) == b'# new\r\nport=9090\r\ndb.password=geheim\r\nfresh=1\r\n'


def test_symlinked_folder_out_refused(roots, tmp_path):
    """The issue's case: old/escape -> /etc, item escape/hostname (here a private copy of /etc)."""
    etc = tmp_path / 'etc'
    write(str(etc / 'hostname'), b'secret-host\n')
    os.symlink(str(etc), os.path.join(roots['src'], 'escape'))
    before = snapshot(str(tmp_path))
    for check in (True, False):
        for items in ([dict(path='escape/hostname')], [dict(path='escape')], [dict(path='*')], [dict(path='**/hostname')]):
            result = run(dict(roots, items=items), check=check, fail=True)
            assert 'escape' in result['msg'] and 'outside' in result['msg'] and str(etc) in result['msg']
            assert result.get('changed') is False and result['copied'] == []
            assert snapshot(str(tmp_path)) == before
    assert not os.path.lexists(os.path.join(roots['dest'], 'escape'))


@pytest.mark.parametrize('mode', ['copy', 'merge'])
def test_symlinked_file_out_refused(roots, tmp_path, mode):
    write(str(tmp_path / 'etc/passwd'), b'root=x:0:0\n')
    write(os.path.join(roots['src'], 'properties/a.properties'), b'a=1\n')
    write(os.path.join(roots['dest'], 'properties/x.properties'), b'x=2\n')
    os.symlink(str(tmp_path / 'etc/passwd'), os.path.join(roots['src'], 'properties/x.properties'))
    before = snapshot(str(tmp_path))
    for check in (True, False):
        result = run(dict(roots, items=[dict(path='properties', mode=mode)]), check=check, fail=True)
        assert 'properties/x.properties' in result['msg'] and 'outside' in result['msg']
        assert snapshot(str(tmp_path)) == before  # a.properties, validated first, was not written either
    assert read(os.path.join(roots['dest'], 'properties/x.properties')) == b'x=2\n'


@pytest.mark.parametrize('where', ['folder', 'file'])
def test_symlink_in_dest_out_refused(roots, tmp_path, where):
    elsewhere = tmp_path / 'elsewhere'
    write(str(elsewhere / 'x.properties'), b'x=outside\n')
    write(os.path.join(roots['src'], 'properties/x.properties'), b'x=1\n')
    write(os.path.join(roots['src'], 'properties/y.properties'), b'y=1\n')
    if where == 'folder':
        os.symlink(str(elsewhere), os.path.join(roots['dest'], 'properties'))
    else:
        os.makedirs(os.path.join(roots['dest'], 'properties'))
        os.symlink(str(elsewhere / 'x.properties'), os.path.join(roots['dest'], 'properties/x.properties'))
    before = snapshot(str(tmp_path))
    for check in (True, False):
        for mode in ('copy', 'merge'):
            result = run(dict(roots, items=[dict(path='properties', mode=mode)]), check=check, fail=True)
            assert 'properties' in result['msg'] and 'outside' in result['msg']
            assert snapshot(str(tmp_path)) == before
    assert sorted(os.listdir(str(elsewhere))) == ['x.properties']
    assert read(str(elsewhere / 'x.properties')) == b'x=outside\n'


def test_src_link_leading_out_of_dest_refused(roots, tmp_path):
    """A link inside src whose text would climb out of dest (dest's folder on the way links elsewhere)."""
    os.makedirs(str(tmp_path / 'elsewhere/sub'))
    write(os.path.join(roots['src'], 'conf/sub/real.txt'), b'r')
    os.symlink('sub/real.txt', os.path.join(roots['src'], 'conf/link.txt'))
    os.symlink(str(tmp_path / 'elsewhere/sub'), os.path.join(roots['dest'], 'conf/sub'))
    before = snapshot(str(tmp_path))
    result = run(dict(roots, items=[dict(path='conf/link.txt')]), fail=True)
    assert 'outside' in result['msg']
    assert snapshot(str(tmp_path)) == before


def test_defaults_symlink_out_refused(roots, tmp_path):
    write(str(tmp_path / 'outside/server.properties'), b'port=1\n')
    os.makedirs(str(tmp_path / 'pristine'))
    os.symlink(str(tmp_path / 'outside'), str(tmp_path / 'pristine/conf'))
    before = snapshot(str(tmp_path))
    for check in (True, False):
        result = run(dict(roots, defaults=str(tmp_path / 'pristine'), items=[dict(path='conf', mode='merge')]), check=check, fail=True)
        assert 'defaults' in result['msg'] and 'conf' in result['msg'] and 'outside' in result['msg']
        assert snapshot(str(tmp_path)) == before


def test_backup_dir_symlink_out_refused(roots, tmp_path):
    os.makedirs(str(tmp_path / 'outside'))
    os.makedirs(roots['backup_dir'])
    os.symlink(str(tmp_path / 'outside'), os.path.join(roots['backup_dir'], 'conf'))
    before = snapshot(str(tmp_path))
    for check in (True, False):
        result = run(dict(roots, items=ITEMS), check=check, fail=True)
        assert 'backup_dir' in result['msg'] and 'outside' in result['msg']
        assert snapshot(str(tmp_path)) == before
    assert os.listdir(str(tmp_path / 'outside')) == []


@pytest.mark.parametrize('option', ['src', 'dest', 'defaults', 'backup_dir', 'items'])
def test_dotdot_in_every_path_option_refused(roots, tmp_path, option):
    os.makedirs(str(tmp_path / 'pristine'))
    args = dict(roots, items=ITEMS, defaults=str(tmp_path / 'pristine'))
    if option == 'items':
        args['items'] = [dict(path='conf/../../new/conf')]
    else:
        # each of these names an existing folder, so only the '..' can be the reason for the refusal
        args[option] = os.path.join(args[option], '..', os.path.basename(args[option]))
        if option == 'backup_dir':
            os.makedirs(roots['backup_dir'])
    before = snapshot(str(tmp_path))
    for check in (True, False):
        result = run(args, check=check, fail=True)
        assert '..' in result['msg'] and (option if option != 'items' else 'item path') in result['msg']
        assert snapshot(str(tmp_path)) == before


def test_dest_symlink_escaping_refused(roots, tmp_path):
    os.makedirs(str(tmp_path / 'elsewhere'))
    os.symlink(str(tmp_path / 'elsewhere'), os.path.join(roots['dest'], 'Server Database/Preferences/sub'))
    write(os.path.join(roots['src'], 'Server Database/Preferences/sub/x.xml'), b'<x/>')
    result = run(dict(roots, items=ITEMS), fail=True)
    assert 'outside' in result['msg']
    assert os.listdir(str(tmp_path / 'elsewhere')) == []


def test_special_file_refused(roots):
    os.mkfifo(os.path.join(roots['src'], 'Server Database/Preferences/pipe'))
    result = run(dict(roots, items=ITEMS), fail=True)
    assert 'special file' in result['msg'] and 'fifo' in result['msg']


def test_unknown_extension_with_auto_refused(roots):
    write(os.path.join(roots['src'], 'conf/x.bin'), b'x')
    write(os.path.join(roots['dest'], 'conf/x.bin'), b'y')
    result = run(dict(roots, items=[dict(path='conf/x.bin', mode='merge')]), fail=True)
    assert 'cannot tell the format' in result['msg']


@pytest.mark.parametrize('fail_at', [1, 3])
def test_failure_part_way_restores_dest(roots, tmp_path, fail_at):
    write(os.path.join(roots['src'], 'Server Database/Preferences/deep/new/file.xml'), b'<n/>')
    before = snapshot(roots['dest'])
    real_replace = os.replace
    calls = []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == fail_at:
            raise OSError(28, 'No space left on device')
        return real_replace(a, b)

    with mock.patch.object(prefs_merge.os, 'replace', side_effect=flaky):
        result = run(dict(roots, items=ITEMS), fail=True)
    assert 'restored dest' in result['msg']
    assert snapshot(roots['dest']) == before
    assert not os.path.exists(roots['backup_dir'])


def test_verification_mismatch_restores_dest(roots):
    before = snapshot(roots['dest'])
    with mock.patch.object(prefs_migration, 'sha256_file', return_value='0' * 64):
        result = run(dict(roots, items=ITEMS), fail=True)
    assert 'sha256' in result['msg']
    assert snapshot(roots['dest']) == before


def test_default_backup_dir_beside_dest(roots):
    args = dict(roots, items=ITEMS, backup_dir=None)
    result = run(args)
    assert os.path.dirname(result['backup_dir']) == os.path.dirname(roots['dest'])
    assert os.path.basename(result['backup_dir']).startswith('new.prefs_backup-')


# --------------------------------------------------------------------------------------------------
# run() in another module's process: module_kwargs() and run() with an AnsibleModule-like object

class Done(BaseException):
    """What an in-process caller's adapter raises from exit_json/fail_json (like SystemExit)."""

    def __init__(self, failed, result):
        super().__init__(failed, result)
        self.failed = failed
        self.result = result


class InProcessModule:
    """An AnsibleModule-like object with only what run() may use; any other attribute raises AttributeError."""

    __slots__ = ('params', 'check_mode', '_diff', 'warnings')

    def __init__(self, args, check=False, diff=False):
        kwargs = prefs_migration.module_kwargs()  # the caller validates with what AnsibleModule would be given
        assert kwargs.pop('supports_check_mode') is True
        validated = ArgumentSpecValidator(**kwargs).validate(args)
        assert not validated.error_messages
        self.params = validated.validated_parameters
        self.check_mode = check
        self._diff = diff
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def exit_json(self, **kwargs):
        raise Done(False, kwargs)

    def fail_json(self, msg, **kwargs):
        raise Done(True, dict(kwargs, msg=msg))


def run_in_process(args, check=False, diff=False):
    module = InProcessModule(args, check=check, diff=diff)
    with pytest.raises(Done) as info:
        prefs_migration.run(module)
    return info.value, module


def test_module_kwargs_builds_an_ansible_module():
    kwargs = prefs_migration.module_kwargs()
    assert kwargs == dict(argument_spec=prefs_common.prefs_argument_spec(), supports_check_mode=True)
    kwargs['argument_spec'].clear()
    kwargs['extra'] = True
    assert prefs_migration.module_kwargs() == dict(argument_spec=prefs_common.prefs_argument_spec(), supports_check_mode=True)
    with patch_module_args(dict(src='/a', dest='/b', items=[dict(path='x')])):
        module = basic.AnsibleModule(**prefs_migration.module_kwargs())
    assert module.params['items'] == [dict(path='x', mode='copy', format='auto', required=False)]
    assert module.supports_check_mode is True


def test_module_main_runs_module_utils(roots):
    assert prefs_migrate_module.run is prefs_migration.run and prefs_migrate_module.module_kwargs is prefs_migration.module_kwargs
    with patch_module_args(dict(roots, items=ITEMS)), mock.patch.object(basic.AnsibleModule, 'exit_json', _exit), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', _fail):
        with pytest.raises(Exit) as info:
            prefs_migrate_module.main()
    assert info.value.result['changed'] is True
    assert read(os.path.join(roots['dest'], 'conf/server.properties')) == b'# new\r\nport=9090\r\ndb.password=geheim\r\nfresh=1\r\n'


def test_run_in_process_repeatedly(roots):
    args = dict(roots, items=ITEMS)
    before = snapshot(roots['dest'])
    done, module = run_in_process(args, check=True, diff=True)
    assert not done.failed and done.result['changed'] is True and len(done.result['diff']) == 4
    assert snapshot(roots['dest']) == before

    done, module = run_in_process(args)
    assert not done.failed
    assert sorted(done.result) == ['backup_dir', 'changed', 'copied', 'dropped_keys', 'kept', 'merged', 'missing']
    assert sorted(done.result['copied']) == ['Server Database/Preferences/backup.xml', 'Server Database/cert.pem',
                                             'Server Database/key.pem']
    assert done.result['dropped_keys'] == {'conf/server.properties': ['legacy']}
    assert done.result['backup_dir'] == roots['backup_dir'] and module.warnings == []
    assert read(os.path.join(roots['dest'], 'conf/server.properties')) == b'# new\r\nport=9090\r\ndb.password=geheim\r\nfresh=1\r\n'

    done, module = run_in_process(dict(args, backup_dir=None))
    assert not done.failed
    merged = dict(path='conf/server.properties', format='properties', keys=['port', 'db.password'], added=['fresh'], changed=False)
    assert done.result == dict(changed=False, copied=[], merged=[merged], kept=[], dropped_keys={'conf/server.properties': ['legacy']},
                               missing=[], backup_dir=None)


def test_run_in_process_failures_reach_the_caller(roots):
    before = snapshot(roots['dest'])
    done, dummy = run_in_process(dict(roots, items=ITEMS + [dict(path='nope', required=True)]))
    assert done.failed and 'required' in done.result['msg'] and done.result['missing'] == ['nope']

    def full(a, b):
        raise OSError(28, 'No space left on device')

    with mock.patch.object(prefs_merge.os, 'replace', side_effect=full):
        done, dummy = run_in_process(dict(roots, items=ITEMS))
    assert done.failed and 'restored dest' in done.result['msg'] and 'No space left' in done.result['msg']
    assert snapshot(roots['dest']) == before and not os.path.exists(roots['backup_dir'])

    # nothing of the failed runs is left over for the next one in the same process
    done, dummy = run_in_process(dict(roots, items=ITEMS))
    assert not done.failed and done.result['missing'] == [] and done.result['changed'] is True


def test_run_in_process_warns_through_the_module(roots):
    os.chmod(os.path.join(roots['src'], 'Server Database/key.pem'), 0o644)
    done, module = run_in_process(dict(roots, items=[dict(path='Server Database/key.pem')]))
    assert not done.failed and 'warnings' not in done.result
    assert module.warnings == ['private key Server Database/key.pem has mode 0644 in src; its mode is kept']
