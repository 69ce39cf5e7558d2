# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plugin of service_stop_ordered: which hosts get the Windows path, and on it the module calls it
makes (PowerShell cannot run here, so a fake service control manager answers _execute_module)."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from ansible_collections.clinops.upgrade.plugins.action import service_stop_ordered as action_mod
from ansible_collections.clinops.upgrade.plugins.action.service_stop_ordered import ActionModule


class FakeClock:
    """time.monotonic / time.sleep for the plugin: sleeping advances the clock, nothing waits."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeSCM:
    """Answers the ansible.windows modules like a Windows host would, and records every call."""

    def __init__(self, services, stop_polls=2, hang=(), ports=None, drain_counts=None):
        self.services = dict((name, dict(state=state, pid=4000 + i if state == 'started' else 0, left=0))
                             for i, (name, state) in enumerate(services.items()))
        self.stop_polls = stop_polls
        self.hang = set(hang)
        self.ports = dict(ports or {})
        self.drain_counts = list(drain_counts or [])
        self.calls = []

    def __call__(self, module_name=None, module_args=None, task_vars=None, **kwargs):  # pylint: disable=unused-argument
        self.calls.append((module_name, dict(module_args or {})))
        args = module_args or {}
        if module_name == 'clinops.upgrade.service_stop_ordered':
            return {'changed': False, 'posix': True}
        if module_name == 'ansible.windows.win_service_info':
            svc = self.services.get(args['name'])
            if svc is None:
                return {'exists': False, 'services': []}
            if svc['state'] == 'stop_pending' and args['name'] not in self.hang:
                svc['left'] -= 1
                if svc['left'] <= 0:
                    svc.update(state='stopped', pid=0)
            entry = {'name': args['name'], 'display_name': args['name'].upper(), 'state': svc['state'], 'process_id': svc['pid']}
            return {'exists': True, 'services': [entry]}
        if module_name == 'ansible.windows.win_command':
            argv = args.get('argv')
            if argv and argv[0] == 'sc.exe':
                svc = self.services[argv[2]]
                if svc['state'] == 'stopped':
                    return {'rc': 1062, 'stdout': 'not started'}
                svc.update(state='stop_pending', left=self.stop_polls)
                return {'rc': 0, 'changed': True}
            if argv and argv[0] == 'taskkill.exe':
                for svc in self.services.values():
                    if str(svc['pid']) == argv[3]:
                        svc.update(state='stopped', pid=0)
                return {'rc': 0, 'changed': True}
            if argv and argv[0] == 'msg.exe':
                return {'rc': 0, 'changed': True}
            return {'rc': 0, 'stdout': '%d\r\n' % self.drain_counts.pop(0)}
        if module_name == 'ansible.windows.win_service':
            self.services[args['name']].update(state='started', pid=5000)
            return {'changed': True}
        if module_name == 'ansible.windows.win_wait_for':
            if self.ports.get(args['port']) == 'stuck':
                return {'failed': True, 'msg': 'timeout'}
            return {'changed': False}
        raise AssertionError('unexpected module %s' % module_name)

    def names(self, module):
        return [c[1] for c in self.calls if c[0] == module]


def make_action(args, scm, check_mode=False, task_vars=None, shell_family='powershell'):
    task = MagicMock()
    task.args = args
    task.check_mode = check_mode
    task.async_val = 0
    task.action = 'clinops.upgrade.service_stop_ordered'
    connection = MagicMock()
    connection._shell.tmpdir = None
    connection._shell.SHELL_FAMILY = shell_family
    action = ActionModule(task, connection, MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    action._execute_module = MagicMock(side_effect=scm)
    action._remove_tmp_path = MagicMock()
    action._early_needs_tmp_path = MagicMock(return_value=False)
    return action, (task_vars or {})


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(action_mod.time, 'monotonic', fake.monotonic)
    monkeypatch.setattr(action_mod.time, 'sleep', fake.sleep)
    return fake


IMAGESERVER = [{'name': 'ShredHostService'}, {'name': 'ImageServerWeb', 'port': 80}, {'name': 'MSSQL'}]


def run(args, scm, **kwargs):
    action, task_vars = make_action(args, scm, **kwargs)
    return action.run(task_vars=task_vars)


# ---------------------------------------------------------------- dispatch

def test_posix_host_runs_the_module():
    scm = FakeSCM({})
    args = {'services': [{'name': 'orthanc'}]}
    res = run(args, scm, shell_family='sh', task_vars={'ansible_facts': {'os_family': 'Debian'}})
    assert res['posix'] is True
    assert scm.calls == [('clinops.upgrade.service_stop_ordered', args)]


@pytest.mark.parametrize('task_vars, shell_family, backend', [
    ({'ansible_facts': {'os_family': 'Windows'}}, 'sh', 'auto'),
    ({'ansible_os_family': 'Windows'}, 'sh', 'auto'),
    ({'ansible_shell_type': 'powershell'}, 'sh', 'auto'),
    ({}, 'powershell', 'auto'),
    ({}, 'sh', 'windows'),
])
def test_windows_hosts_take_the_windows_path(task_vars, shell_family, backend):
    scm = FakeSCM({'Svc': 'stopped'})
    res = run({'services': [{'name': 'Svc', 'backend': backend}]}, scm, task_vars=task_vars, shell_family=shell_family)
    assert not res.get('failed'), res
    assert scm.calls == [('ansible.windows.win_service_info', {'name': 'Svc'})]
    assert res['changed'] is False


# ---------------------------------------------------------------- the Windows path

def test_stop_in_order_waits_for_stopped_state_and_port():
    scm = FakeSCM({'ShredHostService': 'started', 'ImageServerWeb': 'started', 'MSSQL': 'started'})
    res = run({'services': IMAGESERVER}, scm)
    assert not res.get('failed'), res
    assert res['changed'] and res['order'] == ['ShredHostService', 'ImageServerWeb', 'MSSQL']
    assert res['previously_running'] == ['ShredHostService', 'ImageServerWeb', 'MSSQL']
    assert [s['action'] for s in res['services']] == ['stopped'] * 3
    # per service: the stop control, polls until stopped, then (ImageServerWeb) the port closed, then the next one
    sequence = [(m.rsplit('.', 1)[1], a.get('argv', [None, None, a.get('name') or a.get('port')])[2]
                 if m.endswith('win_command') else a.get('name') or a.get('port')) for m, a in scm.calls]
    stops = [i for i, (m, dummy) in enumerate(sequence) if m == 'win_command']
    assert [sequence[i][1] for i in stops] == ['ShredHostService', 'ImageServerWeb', 'MSSQL']
    between = sequence[stops[0] + 1:stops[1]]
    assert between and all(step == ('win_service_info', 'ShredHostService') for step in between)
    assert ('win_wait_for', 80) in sequence[stops[1]:stops[2]]
    wait = [a for m, a in scm.calls if m.endswith('win_wait_for')][0]
    assert wait['state'] == 'stopped' and wait['host'] == '127.0.0.1'
    assert all(s['state'] == 'stopped' for s in scm.services.values())


def test_check_mode_only_reads():
    scm = FakeSCM({'ShredHostService': 'started', 'ImageServerWeb': 'stopped', 'MSSQL': 'started'})
    res = run({'services': IMAGESERVER}, scm, check_mode=True)
    assert res['changed'] and res['order'] == ['ShredHostService', 'MSSQL']
    assert set(m for m, dummy in scm.calls) == {'ansible.windows.win_service_info'}


def test_idempotent_when_nothing_runs():
    scm = FakeSCM({'ShredHostService': 'stopped', 'ImageServerWeb': 'stopped', 'MSSQL': 'stopped'})
    res = run({'services': IMAGESERVER}, scm)
    assert res['changed'] is False and res['order'] == []
    assert set(m for m, dummy in scm.calls) == {'ansible.windows.win_service_info'}


def test_service_that_does_not_stop_fails_and_stops_the_chain(clock):
    scm = FakeSCM({'ShredHostService': 'started', 'ImageServerWeb': 'started', 'MSSQL': 'started'}, hang=['ImageServerWeb'])
    services = [dict(IMAGESERVER[0]), dict(IMAGESERVER[1], timeout=30), dict(IMAGESERVER[2])]
    started = clock.now
    res = run({'services': services}, scm)
    assert res['failed']
    assert 'service ImageServerWeb did not stop within 30 s: state stop_pending, pid 4001 alive' in res['msg']
    assert 'not touched: MSSQL' in res['msg']
    assert clock.now - started >= 30
    assert ['sc.exe', 'stop', 'MSSQL'] not in [a.get('argv') for dummy, a in scm.calls]
    assert scm.services['MSSQL']['state'] == 'started'
    assert [s['action'] for s in res['services']] == ['stopped', 'failed', 'none']


def test_kill_after_forces_the_process():
    scm = FakeSCM({'ImageServerWeb': 'started'}, hang=['ImageServerWeb'])
    res = run({'services': [{'name': 'ImageServerWeb', 'timeout': 5, 'kill_after': True}]}, scm)
    assert not res.get('failed'), res
    assert {'argv': ['taskkill.exe', '/F', '/PID', '4000']} in [a for dummy, a in scm.calls]
    assert res['services'][0]['action'] == 'killed'


def test_port_still_open_fails():
    scm = FakeSCM({'ImageServerWeb': 'started', 'MSSQL': 'started'}, ports={80: 'stuck'})
    res = run({'services': IMAGESERVER[1:]}, scm)
    assert res['failed'] and 'port 80 open' in res['msg'] and 'not touched: MSSQL' in res['msg']


def test_start_in_reverse_with_only():
    scm = FakeSCM({'ShredHostService': 'stopped', 'ImageServerWeb': 'stopped', 'MSSQL': 'stopped'})
    res = run({'services': IMAGESERVER, 'state': 'started', 'only': ['ShredHostService', 'ImageServerWeb']}, scm)
    assert not res.get('failed'), res
    assert res['order'] == ['ImageServerWeb', 'ShredHostService']
    starts = [a['name'] for m, a in scm.calls if m == 'ansible.windows.win_service']
    assert starts == ['ImageServerWeb', 'ShredHostService']
    assert all(a['state'] == 'started' for m, a in scm.calls if m == 'ansible.windows.win_service')
    waits = [a for m, a in scm.calls if m == 'ansible.windows.win_wait_for']
    assert waits == [{'host': '127.0.0.1', 'port': 80, 'state': 'started', 'timeout': 60}]
    assert scm.services['MSSQL']['state'] == 'stopped'


def test_restarted():
    scm = FakeSCM({'ShredHostService': 'started', 'MSSQL': 'stopped'})
    res = run({'services': [{'name': 'ShredHostService'}, {'name': 'MSSQL'}], 'state': 'restarted'}, scm)
    assert not res.get('failed'), res
    assert res['order'] == ['ShredHostService', 'MSSQL', 'ShredHostService']
    assert [s['action'] for s in res['services']] == ['restarted', 'started']


def test_drain_waits_and_broadcasts():
    scm = FakeSCM({'ConAktiv': 'started'}, drain_counts=[2, 1, 0])
    res = run({'services': [{'name': 'ConAktiv'}],
               'drain': {'command': 'count-users.exe', 'interval': 30, 'max_wait': 600, 'broadcast': 'Update in {minutes} min'}},
              scm)
    assert not res.get('failed'), res
    assert res['drain']['count'] == 0 and res['drain']['polls'] == 3 and res['drain']['message_sent']
    argvs = [a.get('argv') or a.get('cmd') for m, a in scm.calls if m == 'ansible.windows.win_command']
    assert argvs[:2] == ['count-users.exe', ['msg.exe', '*', '/TIME:600', 'Update in 10 min']]
    assert argvs.index(['sc.exe', 'stop', 'ConAktiv']) > argvs.index('count-users.exe')


@pytest.mark.parametrize('on_timeout', ['fail', 'proceed'])
def test_drain_timeout(on_timeout):
    scm = FakeSCM({'ConAktiv': 'started'}, drain_counts=[3] * 10)
    res = run({'services': [{'name': 'ConAktiv'}],
               'drain': {'command': 'count-users.exe', 'interval': 10, 'max_wait': 30, 'on_timeout': on_timeout}}, scm)
    assert res['drain']['timed_out']
    argvs = [a.get('argv') for m, a in scm.calls if m == 'ansible.windows.win_command']
    if on_timeout == 'fail':
        assert res['failed'] and 'nothing was stopped' in res['msg']
        assert ['sc.exe', 'stop', 'ConAktiv'] not in argvs
    else:
        assert not res.get('failed') and res['warnings']
        assert ['sc.exe', 'stop', 'ConAktiv'] in argvs


@pytest.mark.parametrize('services, extra, expected', [
    ([{'name': 'A'}, {'name': 'A'}], {}, 'duplicate service name A'),
    ([{'name': 'A', 'timeout': -1}], {}, 'timeout -1 is negative'),
    ([{'name': 'A', 'backend': 'systemd'}], {}, 'backend systemd does not exist on a Windows host'),
    ([{'name': 'A'}], {'drain': {'query': 'select 1', 'connection': {'engine': 'sqlite', 'path': '/x'}}},
     'drain.query is not supported on Windows'),
    ([{'name': 'A'}, {'name': 'Nope'}], {}, 'no Windows service Nope'),
])
def test_bad_input_stops_nothing(services, extra, expected):
    scm = FakeSCM({'A': 'started'})
    res = run(dict({'services': services}, **extra), scm)
    assert res['failed'] and expected in res['msg']
    assert 'nothing was stopped' in res['msg']
    assert not [c for c in scm.calls if c[0] != 'ansible.windows.win_service_info']


def test_unknown_backend_raises_before_any_call():
    scm = FakeSCM({'A': 'started'})
    action, task_vars = make_action({'services': [{'name': 'A', 'backend': 'upstart'}]}, scm)
    with pytest.raises(Exception, match='upstart'):
        action.run(task_vars=task_vars)
    assert scm.calls == []
