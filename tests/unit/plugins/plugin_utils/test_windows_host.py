# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""WindowsHost: what it asks the Windows modules, and what it refuses before anything is written.

PowerShell cannot run here; a small fake answers _execute_module for the calls each case makes and records them.
The whole engine through the ansible.windows test doubles is tests/integration/test_windows_site.py."""

from __future__ import annotations

import base64
import json

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed
from ansible_collections.clinops.upgrade.plugins.plugin_utils import windows_host as wh


class FakeWindows:
    """Files in a dict (path -> bytes), scripted win_powershell answers, every call recorded."""

    def __init__(self, files=None, scripts=None):
        self.files = dict(files or {})
        self.scripts = dict(scripts or {})
        self.calls = []

    def _execute_module(self, module_name, module_args, task_vars):
        del task_vars
        self.calls.append((module_name, module_args))
        if module_name == 'ansible.windows.slurp':
            if module_args['src'] not in self.files:
                return dict(failed=True, msg='Path %s is not found' % module_args['src'])
            return dict(content=base64.b64encode(self.files[module_args['src']]).decode('ascii'))
        if module_name == 'ansible.windows.win_stat':
            return dict(stat=dict(exists=module_args['path'] in self.files, isdir=False))
        if module_name == 'ansible.windows.win_file':
            self.files.pop(module_args['path'], None)
            return dict(changed=True)
        if module_name == 'ansible.windows.win_powershell':
            name = module_args['script'].split('\n', 1)[0].split(': ', 1)[1]
            params = module_args['parameters']
            if name == 'write':
                self.files[params['Path']] = base64.b64decode(params['Content'])
                return dict(changed=True, output=[dict(written=1)], error=[])
            answer = self.scripts[name]
            return dict(changed=True, output=[answer(params) if callable(answer) else answer], error=[])
        raise AssertionError('unexpected call %s' % module_name)

    def names(self):
        return [m.rsplit('.', 1)[1] for m, dummy in self.calls]

    def scripts_run(self):
        return [a['script'].split('\n', 1)[0] for m, a in self.calls if m.endswith('win_powershell')]


def host(fake):
    return wh.WindowsHost(fake, {})


@pytest.mark.parametrize('members, bad', [
    (['app-2/', 'app-2/VERSION', '../evil.txt'], '../evil.txt'),
    (['app-2/VERSION', '/abs/path'], '/abs/path'),
    (['app-2/VERSION', 'C:/Windows/system32/x.dll'], 'C:/Windows/system32/x.dll'),
    (['app-2/VERSION', 'app-2/file.txt:hidden_stream'], 'hidden_stream'),
    (['app-2/VERSION', 'app-2\\..\\..\\evil.txt'], 'evil.txt'),
])
def test_an_escaping_member_is_refused_before_anything_is_written(members, bad):
    fake = FakeWindows(scripts={'zip_list': {'names': members}})
    with pytest.raises(StepFailed) as caught:
        host(fake).unpack('C:/rel/app-2.zip', 'C:/staging')
    assert bad in caught.value.msg and 'nothing was unpacked' in caught.value.msg
    assert fake.scripts_run() == ['# clinops.upgrade: zip_list']  # zip_extract never ran


def test_only_the_checked_members_under_only_are_extracted():
    seen = {}

    def extract(params):
        seen.update(params)
        return {'extracted': len(params['Names'])}
    fake = FakeWindows(scripts={'zip_list': {'names': ['old/', 'old/properties/a.properties', 'old/bin/x.exe', '../x']},
                                'zip_extract': extract})
    # a member outside ``only`` is neither extracted nor judged (as on POSIX)
    assert host(fake).unpack('C:/rel/old.zip', 'C:/staging/defaults', only='old/properties') == 1
    assert seen['Names'] == ['old/properties/a.properties']
    assert seen['Archive'] == 'C:\\rel\\old.zip' and seen['Destination'] == 'C:\\staging\\defaults'


def test_a_rename_that_keeps_failing_names_the_file_held_open():
    fake = FakeWindows(scripts={'rename': {'renamed': False, 'attempts': 10, 'locked': 'C:\\PMOD\\app\\lib\\runtime.jar',
                                           'message': 'The process cannot access the file because it is being used by another process.'}})
    with pytest.raises(StepFailed) as caught:
        host(fake).rename('C:/PMOD/app', 'C:/PMOD/app_old0001')
    assert 'C:\\PMOD\\app\\lib\\runtime.jar is held open' in caught.value.msg
    assert 'after 10 attempts' in caught.value.msg
    params = fake.calls[-1][1]['parameters']
    assert params['Retries'] == wh.RENAME_RETRIES and params['Source'] == 'C:\\PMOD\\app'


def test_a_command_that_does_not_end_in_time_fails_clearly():
    fake = FakeWindows(scripts={'run': {'timed_out': True}})
    with pytest.raises(StepFailed, match='gave no answer within 5s'):
        host(fake).run(['pmodctl.exe', 'echo-ts'], cwd='C:/PMOD/app', timeout=5)
    assert fake.calls[-1][1]['parameters']['TimeoutMs'] == 5000


@pytest.mark.parametrize('data', [
    'a=1\r\nb=ü\r\n'.encode('cp1252'),
    '\ufeffkey=välue\r\n'.encode('utf-16'),
    b'plain\n',
])
def test_files_are_written_and_read_back_byte_for_byte(data):
    fake = FakeWindows()
    win = host(fake)
    win.write_atomic('C:/PMOD/app/Config.ini', data)
    assert fake.files['C:\\PMOD\\app\\Config.ini'] == data
    assert win.read_bytes('C:/PMOD/app/Config.ini') == data


def test_the_journal_lives_on_the_host_and_the_lock_beats_only_for_its_run():
    begin = dict(step='begin', result='ok', target='2.0', attempt=1, run_id='r1', data={}, started='x', ended='x')
    lock = dict(run_id='r1', heartbeat_epoch=1)
    fake = FakeWindows(files={'C:\\state\\journal.jsonl': (json.dumps(begin) + '\n').encode(),
                              'C:\\state\\upgrade.lock': json.dumps(lock).encode()})
    journal = host(fake).journal('C:/state/journal.jsonl', '2.0', 'r1')
    assert journal.attempt['open'] and journal.lock_file == 'C:/state/upgrade.lock'
    journal.record('stop', 'ok', data={'previously_running': ['PMOD-TS']})
    lines = fake.files['C:\\state\\journal.jsonl'].decode().splitlines()
    assert [json.loads(line)['step'] for line in lines] == ['begin', 'stop']
    assert json.loads(fake.files['C:\\state\\upgrade.lock'])['heartbeat_epoch'] > 1
    assert journal.release_lock() and 'C:\\state\\upgrade.lock' not in fake.files
    other = host(FakeWindows(files={'C:\\state\\upgrade.lock': json.dumps(dict(run_id='r9')).encode()})).journal(
        'C:/state/journal.jsonl', '2.0', 'r1')
    assert not other.release_lock()


@pytest.mark.parametrize('name,params', [('db_backup', {'engine': 'sqlite'}),
                                         ('schema_update', {'engine': 'sqlite', 'migrations': 'C:/app/migrations'})])
def test_a_step_that_needs_python_on_the_host_is_refused_at_validation(name, params):
    with pytest.raises(StepFailed, match='not carried out on Windows hosts'):
        host(FakeWindows()).validate(name, params)


def test_schema_updates_command_mode_is_validated_for_a_windows_host():
    """The vendor's tool with version_command passes; a driver's version_query and a SQL login are refused in words."""
    tool = dict(engine='files', path='C:/ConAktiv/Server Database', command=['ca_admin.exe', 'structure-update'],
                version_command=['ca_admin.exe', 'data-version'])
    host(FakeWindows()).validate('schema_update', tool)
    with pytest.raises(StepFailed, match='version_query with engine postgresql needs a Python driver'):
        host(FakeWindows()).validate('schema_update', dict(engine='postgresql', database='pmod', command=['x.exe'],
                                                           version_query='SELECT 1'))
    with pytest.raises(StepFailed, match='Windows authentication'):
        host(FakeWindows()).validate('schema_update', dict(engine='mssql', database='pmod', command=['x.exe'],
                                                           version_query='SELECT 1', login_user='sa', login_password='pw'))


def test_windows_service_options_are_checked_with_service_stop_ordereds_own_spec():
    with pytest.raises(StepFailed, match='service_stop_ordered'):
        host(FakeWindows()).validate('service_stop_ordered', dict(services=[dict(name='PMOD-TS', timeout='soon')], state='stopped'))
    host(FakeWindows()).validate('service_stop_ordered', dict(services=[dict(name='PMOD-TS', backend='supervisor')], state='stopped',
                                                              supervisor_config='/etc/supervisor.conf'))


def test_every_script_names_itself_and_takes_its_input_as_parameters():
    for name, script in wh.SCRIPTS.items():
        assert script.splitlines()[0] == '# clinops.upgrade: %s' % name
        assert '%s' not in script and '{0}' not in script  # nothing is formatted into PowerShell


@pytest.mark.parametrize('path, expected', [('C:/PMOD/app', 'C:\\PMOD\\app'), ('/tmp/lab/app', '/tmp/lab/app'),
                                            ('D:\\x/y', 'D:\\x\\y')])
def test_native_paths(path, expected):
    assert wh.native(path) == expected
    assert wh.is_windows_abs(path)


class FakeServices(FakeWindows):
    """A service control manager: PMOD-TS has a dependent PMOD-Web, which has its own dependent PMOD-Report."""

    depends = {'PMOD-TS': ['PMOD-Web'], 'PMOD-Web': ['PMOD-Report']}

    def __init__(self):
        super().__init__()
        self.running = {'PMOD-TS', 'PMOD-Web', 'PMOD-Report'}

    def _execute_module(self, module_name, module_args, task_vars):
        if module_name == 'ansible.windows.win_service_info':
            self.calls.append((module_name, module_args))
            name = module_args['name']
            return dict(services=[dict(name=name, state='started' if name in self.running else 'stopped', process_id=7,
                                       dependency_of=self.depends.get(name, []))])
        if module_name == 'ansible.windows.win_command':
            self.calls.append((module_name, module_args))
            self.running.discard(module_args['argv'][2])
            return dict(rc=0, stdout='')
        if module_name == 'ansible.windows.win_service':
            self.calls.append((module_name, module_args))
            self.running.add(module_args['name'])
            return dict(changed=True)
        return super()._execute_module(module_name, module_args, task_vars)


def test_dependent_services_are_stopped_before_and_started_after_their_service():
    fake = FakeServices()
    win = host(fake)
    stopped = win.services('stopped', [dict(name='PMOD-TS', timeout=5, backend='supervisor')], supervisor_config='/x.conf')
    stops = [a['argv'][2] for m, a in fake.calls if m.endswith('win_command')]
    assert stops == ['PMOD-Report', 'PMOD-Web', 'PMOD-TS'] and not fake.running
    assert set(stopped['previously_running']) == {'PMOD-TS', 'PMOD-Web', 'PMOD-Report'}
    win.services('started', [dict(name='PMOD-TS', timeout=5)], only=stopped['previously_running'])
    starts = [a['name'] for m, a in fake.calls if m.endswith('win_service')]
    assert starts == ['PMOD-TS', 'PMOD-Web', 'PMOD-Report'] and fake.running == {'PMOD-TS', 'PMOD-Web', 'PMOD-Report'}


# -- realpath: every component, not only the last (win_stat of each, follow: false) ---------------------------------

class FakeLinks(FakeWindows):
    """Folders and links (path -> target) with win_stat as ansible.windows answers it with follow: false."""

    def __init__(self, folders, links):
        super().__init__()
        self.folders = set(folders)
        self.links = dict(links)

    def _execute_module(self, module_name, module_args, task_vars):
        if module_name != 'ansible.windows.win_stat':
            return super()._execute_module(module_name, module_args, task_vars)
        self.calls.append((module_name, module_args))
        assert module_args['follow'] is False
        path = module_args['path'].replace('\\', '/')
        if path in self.links:
            return dict(stat=dict(exists=True, isdir=True, islnk=False, isjunction=True, lnk_source=self.links[path].replace('/', '\\')))
        return dict(stat=dict(exists=path in self.folders, isdir=path in self.folders, islnk=False, isjunction=False))


def test_realpath_resolves_a_junction_in_the_middle_of_the_path():
    fake = FakeLinks({'C:/PMOD', 'D:/Apps', 'D:/Apps/PMOD', 'D:/Apps/PMOD/app_staging', 'D:/Apps/PMOD/app_staging/pmod-4.4'},
                     {'C:/PMOD/app_staging': 'D:/Apps/PMOD/app_staging'})
    win = host(fake)
    assert win.realpath('C:/PMOD/app_staging/pmod-4.4') == 'D:/Apps/PMOD/app_staging/pmod-4.4'
    assert win.realpath('C:\\PMOD\\app_staging\\') == 'D:/Apps/PMOD/app_staging'
    assert win.realpath('C:/PMOD/app_staging/../app') == 'C:/PMOD/app'
    # a missing component ends the walk; the rest is kept as written
    assert win.realpath('C:/PMOD/app_staging/new/x') == 'D:/Apps/PMOD/app_staging/new/x'


def test_realpath_of_a_plain_path_asks_each_component_once():
    fake = FakeLinks({'C:/PMOD', 'C:/PMOD/app'}, {})
    win = host(fake)
    assert win.realpath('C:/PMOD/app') == 'C:/PMOD/app'
    assert win.realpath('C:/PMOD/app/') == 'C:/PMOD/app'
    asked = [a['path'] for m, a in fake.calls]
    assert asked == ['C:\\PMOD', 'C:\\PMOD\\app']  # remembered: the second question costs no round trip


def test_a_link_loop_is_refused_in_words():
    fake = FakeLinks(set(), {'C:/a': 'C:/b', 'C:/b': 'C:/a'})
    with pytest.raises(StepFailed, match='more than 40 links'):
        host(fake).realpath('C:/a/x')


# -- long paths: the \\?\ prefix before the .NET file APIs -------------------------------------------------------------

@pytest.mark.parametrize('name, parameters', [('write', ['Path']), ('rename', ['Source', 'Destination']),
                                              ('copy_tree', ['Source', 'Destination']), ('zip_list', ['Archive']),
                                              ('zip_extract', ['Archive', 'Destination'])])
def test_every_path_parameter_gets_the_long_path_prefix_before_it_is_used(name, parameters):
    lines = wh.SCRIPTS[name].splitlines()
    if name in wh.READ_ONLY_SCRIPTS:  # [CmdletBinding(SupportsShouldProcess)] belongs to the param() block, just before it
        assert lines.pop(1) == wh.SHOULD_PROCESS
    assert lines[1].startswith('param(')  # PowerShell wants param() first: the helper functions come after it
    assert 'function Get-LongPath([string]$Path) {' in lines
    for parameter in parameters:
        prefixed = lines.index('$%s = Get-LongPath $%s' % (parameter, parameter))
        helpers_end = lines.index('}', lines.index('function Get-ShortPath([string]$Path) {'))
        first_use = min(i for i, line in enumerate(lines) if i > helpers_end and '$%s' % parameter in line and 'Get-LongPath' not in line)
        assert prefixed < first_use, (parameter, lines[first_use])


def test_only_the_scripts_that_read_run_in_check_mode():
    """win_powershell runs a script in check mode only when it declares SupportsShouldProcess (on its param() block);
    the scripts that read do, those that change the host do not (and -WhatIf would not stop their .NET calls)."""
    assert wh.READ_ONLY_SCRIPTS == {'zip_list', 'free_space', 'clock'}
    for name, script in wh.SCRIPTS.items():
        lines = script.splitlines()
        assert (lines[1] == wh.SHOULD_PROCESS and lines[2].startswith('param(')) is (name in wh.READ_ONLY_SCRIPTS), name
        assert script.count('SupportsShouldProcess') == (1 if name in wh.READ_ONLY_SCRIPTS else 0), name


class CheckModeAction:
    """An action plugin in check mode whose module calls are recorded."""

    class _Task:
        check_mode = True

    def __init__(self):
        self._task = self._Task()
        self.calls = []

    def _execute_module(self, module_name, module_args, task_vars):
        del task_vars
        self.calls.append((module_name, module_args))
        return {'output': [{'free': 5, 'drive': 'C:\\'}], 'error': []}


def test_a_script_that_changes_the_host_is_refused_in_check_mode_before_any_call():
    action = CheckModeAction()
    host = wh.WindowsHost(action, {})
    assert host.free_space('C:/PMOD') == 5
    with pytest.raises(StepFailed, match="not done in check mode"):
        host.write_atomic('C:/PMOD/x.txt', b'x')
    assert [a['script'].splitlines()[0] for dummy, a in action.calls] == ['# clinops.upgrade: free_space']
