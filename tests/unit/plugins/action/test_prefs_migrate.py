# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Windows path of prefs_migrate, tested by the module calls it makes.

PowerShell cannot run here, so ``_execute_module`` and ``_transfer_file`` are replaced by a small fake
Windows host (a dict of files) that answers win_stat, win_find, slurp, win_copy and win_file the way the
ansible.windows modules do; the tests assert on the fake host's files afterwards and on the calls made.
"""

from __future__ import annotations

import base64
import hashlib
import ntpath
from unittest import mock

import pytest

from ansible.plugins.action import ActionBase
from ansible_collections.clinops.upgrade.plugins.action import prefs_migrate as action_mod


class FakeWindows:
    def __init__(self):
        self.files = {}  # lower path -> [path, bytes, mtime]
        self.dirs = set()
        self.calls = []
        self.clock = 1000
        self.fail_copy_to = None
        self.pushed = {}

    def _key(self, path):
        return ntpath.normpath(path).lower()

    def add_dir(self, path):
        while path and self._key(path) not in self.dirs:
            self.dirs.add(self._key(path))
            parent = ntpath.dirname(path)
            if parent == path:
                break
            path = parent

    def put(self, path, data, mtime=None):
        self.add_dir(ntpath.dirname(path))
        self.clock += 1
        self.files[self._key(path)] = [path, data, mtime or self.clock]

    def get(self, path):
        return self.files[self._key(path)][1]

    def tree(self, root):
        root = self._key(root) + '\\'
        return {k[len(root):]: v[1] for k, v in self.files.items() if k.startswith(root)}

    def execute(self, module_name, module_args, task_vars=None):
        self.calls.append((module_name, dict(module_args)))
        name = module_name.rsplit('.', 1)[-1]
        return getattr(self, name)(module_args)

    def transfer(self, local, remote):
        with open(local, 'rb') as handle:
            self.pushed[remote] = handle.read()

    # the modules
    def win_stat(self, args):
        key = self._key(args['path'])
        if key in self.files:
            path, data, mtime = self.files[key]
            st = dict(exists=True, isdir=False, islnk=False, isreg=True, size=len(data), lastwritetime=mtime, path=path)
            if args.get('get_checksum'):
                st['checksum'] = hashlib.sha256(data).hexdigest()
            return dict(stat=st)
        if key in self.dirs:
            return dict(stat=dict(exists=True, isdir=True, islnk=False, isreg=False, path=args['path']))
        return dict(stat=dict(exists=False))

    def win_find(self, args):
        root = self._key(args['paths'][0]) + '\\'
        found = [dict(path=v[0], isdir=False, islnk=False, isreg=True, size=len(v[1]), lastwritetime=v[2])
                 for k, v in self.files.items() if k.startswith(root)]
        found += [dict(path=d, isdir=True, islnk=False, isreg=False) for d in self.dirs if d.startswith(root)]
        return dict(files=found, matched=len(found))

    def slurp(self, args):
        return dict(content=base64.b64encode(self.get(args['src'])).decode())

    def win_copy(self, args):
        if self.fail_copy_to and self._key(args['dest']).endswith(self.fail_copy_to):
            return dict(failed=True, msg='Access to the path is denied')
        if args['_copy_mode'] == 'remote':
            path, data, mtime = self.files[self._key(args['src'])]
            self.put(args['dest'], data, mtime)  # Copy-Item keeps LastWriteTime
        else:
            self.put(args['dest'], self.pushed[args['src']])
        return dict(changed=True)

    def win_file(self, args):
        key = self._key(args['path'])
        if args['state'] == 'directory':
            self.add_dir(args['path'])
        else:
            self.files.pop(key, None)
            self.dirs.discard(key)
            for k in [k for k in self.files if k.startswith(key + '\\')]:
                del self.files[k]
        return dict(changed=True)


SRC = 'C:\\ConAktiv Server_old0001'
DEST = 'C:\\ConAktiv Server'


@pytest.fixture
def host():
    win = FakeWindows()
    win.put(SRC + '\\Server Database\\Preferences\\Backup.xml', b'<b><interval>6</interval></b>')
    win.put(SRC + '\\Server Database\\key.pem', b'-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n')
    win.put(SRC + '\\Server Database\\server.ini', b'[Web]\r\nPort=8081\r\nPassword=geheim\r\n')
    win.put(DEST + '\\Server Database\\Preferences\\Backup.xml', b'<b><interval>24</interval></b>')
    win.put(DEST + '\\Server Database\\server.ini', b'; new\r\n[Web]\r\nPort=8080\r\nPassword=\r\nTls=1\r\n')
    return win


ITEMS = [dict(path='Server Database/Preferences'), dict(path='Server Database/key.pem'),
         dict(path='Server Database/server.ini', mode='merge')]


def make_action(win, args, check=False, diff=False, windows=True):
    task = mock.MagicMock()
    task.args = args
    task.check_mode = check
    task.diff = diff
    task.async_val = 0
    connection = mock.MagicMock()
    connection._shell.SHELL_FAMILY = 'powershell' if windows else 'sh'
    connection._shell._IS_WINDOWS = windows
    connection._shell.tmpdir = 'C:\\Users\\ansible\\AppData\\Local\\Temp\\ansible-tmp'
    connection._shell.join_path = ntpath.join
    action = action_mod.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock())
    action._execute_module = mock.MagicMock(side_effect=win.execute)
    action._transfer_file = mock.MagicMock(side_effect=win.transfer)
    action._remove_tmp_path = mock.MagicMock()
    return action


def run(win, args, **kwargs):
    action = make_action(win, args, **kwargs)
    with mock.patch.object(ActionBase, 'run', return_value={}):
        return action.run(task_vars={})


def test_windows_copy_merge_verify_and_rerun(host):
    args = dict(src=SRC, dest=DEST, items=ITEMS, backup_dir='C:\\bk')
    result = run(host, args)
    assert result['changed'] is True, result
    tree = host.tree(DEST)
    assert tree['server database\\server.ini'] == b'; new\r\n[Web]\r\nPort=8081\r\nPassword=geheim\r\nTls=1\r\n'
    assert tree['server database\\preferences\\backup.xml'] == b'<b><interval>6</interval></b>'
    assert b'SECRET' in tree['server database\\key.pem']
    assert host.tree('C:\\bk')['server database\\server.ini'] == b'; new\r\n[Web]\r\nPort=8080\r\nPassword=\r\nTls=1\r\n'
    assert result['merged'][0]['keys'] == ['Web/Port', 'Web/Password']
    names = [c[0] for c in host.calls]
    assert 'ansible.windows.slurp' in names and 'ansible.windows.win_copy' in names
    # every written file was checked by sha256 afterwards
    stats = [c[1]['path'] for c in host.calls if c[0] == 'ansible.windows.win_stat' and c[1].get('checksum_algorithm') == 'sha256']
    assert DEST + '\\Server Database\\server.ini' in stats and DEST + '\\Server Database\\key.pem' in stats
    # merged content went through _transfer_file and win_copy single mode
    singles = [c[1] for c in host.calls if c[0] == 'ansible.windows.win_copy' and c[1]['_copy_mode'] == 'single']
    assert any(c['dest'] == DEST + '\\Server Database\\server.ini' for c in singles)

    host.calls.clear()
    again = run(host, args)
    assert again['changed'] is False
    assert not [c for c in host.calls if c[0] in ('ansible.windows.win_copy', 'ansible.windows.win_file')]


def test_windows_check_mode_writes_nothing_and_masks_diff(host):
    before = dict(host.files)
    result = run(host, dict(src=SRC, dest=DEST, items=ITEMS), check=True, diff=True)
    assert result['changed'] is True
    assert host.files == before
    assert not [c for c in host.calls if c[0] in ('ansible.windows.win_copy', 'ansible.windows.win_file')]
    text = repr(result['diff'])
    assert 'SECRET' not in text and 'geheim' not in text and '8081' in text


def test_windows_failure_restores_from_backup(host):
    before = host.tree(DEST)
    host.fail_copy_to = 'key.pem'
    result = run(host, dict(src=SRC, dest=DEST, items=ITEMS, backup_dir='C:\\bk'))
    assert result['failed'] is True
    assert 'restored dest' in result['msg']
    assert host.tree(DEST) == before


def test_windows_bad_input(host):
    result = run(host, dict(src=SRC, dest=SRC + '\\inner', items=ITEMS))
    assert result['failed'] and 'inside' in result['msg']
    result = run(host, dict(src='C:\\absent', dest=DEST, items=ITEMS))
    assert result['failed'] and 'does not exist' in result['msg']
    result = run(host, dict(src=SRC, dest=DEST, items=[dict(path='..\\x')]))
    assert result['failed'] and '..' in result['msg']
    result = run(host, dict(src=SRC, dest=DEST, items=[dict(path='x', format='yaml')]))
    assert result['failed'] and 'format' in result['msg']
    assert not [c for c in host.calls if c[0] in ('ansible.windows.win_copy', 'ansible.windows.win_file')]


def test_windows_link_escaping_root_refused(host):
    real_find = host.win_find

    def find(args):
        res = real_find(args)
        res['files'].append(dict(path=SRC + '\\Server Database\\Preferences\\evil.xml', isdir=False, islnk=True,
                                 isreg=False, lnk_target='D:\\elsewhere\\evil.xml'))
        return res
    host.win_find = find
    result = run(host, dict(src=SRC, dest=DEST, items=ITEMS))
    assert result['failed'] and 'outside' in result['msg']


def test_posix_hosts_run_the_module():
    win = mock.MagicMock()
    action = make_action(win, dict(src='/a', dest='/b', items=[]), windows=False)
    action._execute_module = mock.MagicMock(return_value=dict(changed=False, ran='module'))
    with mock.patch.object(ActionBase, 'run', return_value={}):
        result = action.run(task_vars={'ansible_facts': {'os_family': 'Debian'}})
    assert result['ran'] == 'module'
    assert action._execute_module.call_args.kwargs['module_name'] == 'clinops.upgrade.prefs_migrate'


@pytest.mark.parametrize('task_vars, family, expected', [
    ({'ansible_facts': {'os_family': 'Windows'}}, 'sh', True), ({}, 'powershell', True), ({}, 'sh', False)])
def test_is_windows(task_vars, family, expected):
    connection = mock.MagicMock()
    connection._shell.SHELL_FAMILY = family
    connection._shell._IS_WINDOWS = family == 'powershell'
    assert action_mod.is_windows(task_vars, connection) is expected


# -- no path leaves its root (issue #11): links and junctions, component by component -------------------------------

class LinkedWindows(FakeWindows):
    """The fake host with symlinks and junctions: a link in the middle of a path is followed, as Windows does; win_stat
    of the link itself answers islnk/isjunction and lnk_source (follow=False), as ansible.windows.win_stat does."""

    def __init__(self):
        super().__init__()
        self.links = {}  # lower path -> (target, junction)

    def link(self, path, target, junction=True):
        self.add_dir(ntpath.dirname(path))
        self.links[ntpath.normpath(path).lower()] = (target, junction)

    def _key(self, path):
        parts = ntpath.normpath(path).lower().split('\\')
        key = parts[0]
        for index, part in enumerate(parts[1:], 1):
            key = key + '\\' + part
            if key in self.links and index < len(parts) - 1:
                key = ntpath.normpath(self.links[key][0]).lower()
        return key

    def win_stat(self, args):
        own = ntpath.normpath(args['path']).lower()
        parent = self._key(ntpath.dirname(args['path']))
        key = parent + '\\' + ntpath.basename(own)
        if key in self.links:
            target, junction = self.links[key]
            return dict(stat=dict(exists=True, isdir=junction, islnk=not junction, isjunction=junction, isreg=False,
                                  lnk_source=target, lnk_target=target, path=args['path']))
        return super().win_stat(args)


@pytest.fixture
def linked():
    win = LinkedWindows()
    win.put(SRC + '\\Server Database\\Preferences\\Backup.xml', b'<b><interval>6</interval></b>')
    win.put(SRC + '\\Server Database\\server.ini', b'[Web]\r\nPort=8081\r\n')
    win.put(DEST + '\\Server Database\\Preferences\\Backup.xml', b'<b><interval>24</interval></b>')
    win.put(DEST + '\\Server Database\\server.ini', b'[Web]\r\nPort=8080\r\n')
    win.put('C:\\Windows\\System32\\drivers\\etc\\hosts', b'127.0.0.1 localhost\r\n')
    win.add_dir('D:\\elsewhere')
    return win


def writes(win):
    return [c for c in win.calls if c[0] in ('ansible.windows.win_copy', 'ansible.windows.win_file')]


def test_windows_junction_folder_out_of_src_refused(linked):
    linked.link(SRC + '\\escape', 'C:\\Windows\\System32\\drivers\\etc')
    before = dict(linked.files)
    for check in (True, False):
        result = run(linked, dict(src=SRC, dest=DEST, items=[dict(path='escape/hosts')]), check=check)
        assert result['failed'] and 'escape is a junction to C:\\Windows' in result['msg'] and 'outside' in result['msg']
    assert linked.files == before and not writes(linked)
    assert not any(c[0] == 'ansible.windows.slurp' for c in linked.calls)


def test_windows_symlinked_file_out_of_src_refused(linked):
    linked.link(SRC + '\\Server Database\\hosts.ini', 'C:\\Windows\\System32\\drivers\\etc\\hosts', junction=False)
    result = run(linked, dict(src=SRC, dest=DEST, items=[dict(path='Server Database/hosts.ini')]))
    assert result['failed'] and 'hosts.ini is a symlink' in result['msg']
    assert not writes(linked)


def test_windows_junction_in_dest_refused_nothing_written_outside(linked):
    linked.link(DEST + '\\Server Database\\Preferences', 'D:\\elsewhere')
    for check in (True, False):
        result = run(linked, dict(src=SRC, dest=DEST, items=ITEMS[:1]), check=check)
        assert result['failed'] and 'Server Database/Preferences is a junction to D:\\elsewhere' in result['msg']
    assert linked.tree('D:\\elsewhere') == {} and not writes(linked)


def test_windows_junction_below_an_unmatched_folder_in_dest_refused(linked):
    """dest\\conf\\sub is a junction out that no item pattern matches: the target's own components are checked."""
    linked.put(SRC + '\\conf\\sub\\x.ini', b'[a]\r\nb=1\r\n')
    linked.add_dir(DEST + '\\conf')
    linked.link(DEST + '\\conf\\sub', 'D:\\elsewhere')
    result = run(linked, dict(src=SRC, dest=DEST, items=[dict(path='conf/**/*.ini')]))
    assert result['failed'] and 'conf/sub is a junction' in result['msg']
    assert linked.tree('D:\\elsewhere') == {} and not writes(linked)


def test_windows_junction_in_defaults_and_backup_dir_refused(linked):
    linked.add_dir('C:\\pristine')
    linked.link('C:\\pristine\\Server Database', 'D:\\elsewhere')
    result = run(linked, dict(src=SRC, dest=DEST, defaults='C:\\pristine', items=[dict(path='Server Database/server.ini', mode='merge')]))
    assert result['failed'] and 'defaults' in result['msg'] and 'junction' in result['msg']
    linked.add_dir('C:\\bk')
    linked.link('C:\\bk\\Server Database', 'D:\\elsewhere')
    result = run(linked, dict(src=SRC, dest=DEST, backup_dir='C:\\bk', items=ITEMS[:1]))
    assert result['failed'] and 'backup_dir' in result['msg'] and 'junction' in result['msg']
    assert linked.tree('D:\\elsewhere') == {} and not writes(linked)


def test_windows_junction_inside_the_root_is_allowed(linked):
    linked.link(SRC + '\\Server Database\\Prefs', SRC + '\\Server Database\\Preferences')
    result = run(linked, dict(src=SRC, dest=DEST, items=ITEMS[:1]))
    assert result['changed'] is True, result.get('msg')
    assert linked.get(DEST + '\\Server Database\\Preferences\\Backup.xml') == b'<b><interval>6</interval></b>'


@pytest.mark.parametrize('option', ['src', 'dest', 'defaults', 'backup_dir'])
def test_windows_dotdot_in_every_path_option_refused(linked, option):
    args = dict(src=SRC, dest=DEST, defaults='C:\\pristine', backup_dir='C:\\bk', items=ITEMS[:1])
    args[option] = args[option] + '\\..\\' + ntpath.basename(args[option])
    for check in (True, False):
        result = run(linked, args, check=check)
        assert result['failed'] and option in result['msg'] and '..' in result['msg']
    assert linked.calls == []  # refused before the first module call


@pytest.mark.parametrize('path', ['..\\x', 'a/../../x', 'C:\\Windows', '/etc/passwd'])
def test_windows_dotdot_and_absolute_items_refused(linked, path):
    result = run(linked, dict(src=SRC, dest=DEST, items=[dict(path=path)]))
    assert result['failed'] and ('..' in result['msg'] or 'absolute' in result['msg'])
    assert linked.calls == []
