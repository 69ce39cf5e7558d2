# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress callback fed with the results the roles really return: the engine's steps (upgrade_cutover, as
cutover.py exits with them, a failure included), the host summaries summary.yml and unreached.yml record with set_fact,
and a task that fails or a host that cannot be reached. The lines are read back as the display prints them."""

from __future__ import annotations

import pytest

from ansible.inventory.host import Host
from ansible.playbook.task import Task
from ansible.plugins.loader import callback_loader

from ansible_collections.clinops.upgrade.plugins.callback import progress

try:  # ansible-core 2.19 and later hand callbacks a CallbackTaskResult
    from ansible.executor.task_result import CallbackTaskResult as _Result
except ImportError:  # pragma: no cover - older ansible-core
    from ansible.executor.task_result import TaskResult as _Result


class Display:
    def __init__(self):
        self.lines = []

    def display(self, msg, *args, **kwargs):  # pylint: disable=unused-argument
        self.lines.append(msg)


class VariableManager:
    """What the callback asks of a play's variable manager: the play's hosts and whether it runs in check mode."""

    def __init__(self, play):
        self.play = play

    def get_vars(self, play=None):  # pylint: disable=unused-argument
        return {'ansible_play_hosts_all': list(self.play.hosts), 'ansible_check_mode': self.play.check_mode}


class Play:
    def __init__(self, name, hosts, check_mode=False):
        self.name, self.hosts, self.check_mode = name, hosts, check_mode

    def get_name(self):
        return self.name

    def get_variable_manager(self):
        return VariableManager(self)


def result(host, data, name='a task', ignore_unreachable=False):
    task = Task()
    task.name = name
    task.ignore_unreachable = ignore_unreachable
    return _Result(Host(host), task, data, {})


def report(host, role, outcome, **more):
    """upgrade_host_report as roles/upgrade/tasks/summary.yml sets it."""
    row = {'host': host, 'role': role, 'site': 'lab', 'server': 'server1' if role == 'client' else '', 'batch': None,
           'from_version': '4.3.0', 'to_version': '4.4.0', 'installed_version': '4.3.0', 'kind': 'minor',
           'result': outcome, 'message': '', 'downtime_s': None, 'attempt': 1, 'steps': [], 'plan': {},
           'migrations_applied': {}}
    row.update(more)
    return {'ansible_facts': {'upgrade_host_report': row}, 'changed': False, '_ansible_no_log': False}


SERVER_STEPS = [dict(step=s, result='skipped' if s == 'backup_after' else 'ok', seconds=sec) for s, sec in (
    ('stage', 0.412), ('configure', 0.021), ('migrate_pre', 0.088), ('stop', 1.502), ('backup', 0.31), ('swap', 0.02),
    ('prefs', 0.05), ('migrate_offline', 0.07), ('start', 2.1), ('verify', 0.9), ('restart_after_verify', 0.6),
    ('migrate_post', 0.05), ('backup_after', 0.001), ('cleanup', 0.2))]
CUTOVER_OK = {'changed': True, 'pending': [s['step'] for s in SERVER_STEPS], 'skipped_done': [], 'steps': SERVER_STEPS,
              'attempt': {'number': 1, 'open': True, 'done': [], 'entries': []}, 'data': {'old_dir': '/opt/PMOD_old0001'}}
CUTOVER_FAILED = {'failed': True, 'msg': 'step stage failed: /opt/PMOD_staging exists and is not a folder', 'failed_step': 'stage',
                  'step_result': {}, 'changed': True, 'pending': ['stage', 'swap', 'prefs', 'verify', 'cleanup'], 'skipped_done': [],
                  'steps': [{'step': 'stage', 'result': 'failed', 'seconds': 0.004,
                             'message': '/opt/PMOD_staging exists and is not a folder'}],
                  'attempt': {'number': 1, 'open': True}, 'data': {}}


@pytest.fixture
def callback():
    """The callback as Ansible loads it (its documented options with their defaults)."""
    cb = callback_loader.get('clinops.upgrade.progress')
    assert isinstance(cb, progress.CallbackModule)
    cb.set_options()
    cb._display = Display()  # pylint: disable=protected-access
    cb.silent = False
    return cb


def lines(cb):
    return list(cb._display.lines)  # pylint: disable=protected-access


def test_every_engine_step_is_a_line_and_the_total_counts_the_server_and_its_downtime(callback):
    callback.v2_playbook_on_play_start(Play('Upgrade the servers, one at a time', ['server1']))
    callback.v2_runner_on_ok(result('server1', report('server1', 'server', 'pending')))
    callback.v2_runner_on_ok(result('server1', CUTOVER_OK, 'Stage ... in one task'))
    out = lines(callback)
    for step in SERVER_STEPS:
        assert any(line.startswith('[progress] server1: %s %s ' % (step['step'], step['result'])) for line in out), step
    assert '[progress] server1: stop ok 1.5 s' in out
    # the downtime so far: the steps from stop to restart_after_verify, before the journal's own figure arrives
    assert out[-1] == ("[progress] Upgrade the servers, one at a time: hosts done 0/1, failed 0, held back 0, not reached 0, "
                       "servers' downtime so far 5.6 s")
    callback.v2_runner_on_ok(result('server1', report('server1', 'server', 'upgraded', downtime_s=5.189,
                                                      message='upgraded from 4.3.0 to 4.4.0')))
    out = lines(callback)
    assert out[-2] == '[progress] server1 (server): upgraded 4.3.0 -> 4.4.0, downtime 5.2 s'
    assert out[-1].endswith("hosts done 1/1, failed 0, held back 0, not reached 0, servers' downtime so far 5.2 s")


def test_a_rescued_client_failure_then_its_rollback_and_a_held_back_and_an_unreached_client(callback):
    callback.v2_playbook_on_play_start(Play('Preflight', ['server1', 'client1', 'client2', 'client3']))
    callback.v2_runner_on_unreachable(result('client2', {'unreachable': True, 'msg': 'ssh: connect to host 127.0.0.1 port 9: '
                                                         'Connection refused'}, ignore_unreachable=True))
    assert lines(callback) == []   # the role records it; printed with its result
    callback.v2_runner_on_ok(result('client2', report('client2', 'client', 'not_reached', from_version='',
                                                      message='not reached, left as it is: Connection refused')))
    assert lines(callback)[-2] == '[progress] client2 (client): not reached - not reached, left as it is: Connection refused'
    assert lines(callback)[-1] == '[progress] Preflight: hosts done 1/4, failed 0, held back 0, not reached 1'

    callback.v2_playbook_on_play_start(Play('Upgrade the clients', ['client1', 'client2', 'client3']))
    callback.v2_runner_on_failed(result('client1', CUTOVER_FAILED, 'Stage the new client ... in one task'))
    out = lines(callback)
    assert '[progress] client1: stage failed 0.0 s - /opt/PMOD_staging exists and is not a folder' in out
    assert out[-2].startswith('[progress] client1: task "Stage the new client ... in one task" FAILED: step stage failed')
    assert out[-1] == '[progress] Upgrade the clients: hosts done 1/3, failed 1, held back 0, not reached 0'
    callback.v2_runner_on_ok(result('client1', report('client1', 'client', 'rolled_back', message='step stage failed; restored')))
    callback.v2_runner_on_ok(result('client3', report('client3', 'client', 'held_back', message='batch 1 failed')))
    out = lines(callback)
    assert '[progress] client1 (client): rolled back 4.3.0 -> 4.4.0 - step stage failed; restored' in out
    assert out[-1] == '[progress] Upgrade the clients: hosts done 2/3, failed 1, held back 1, not reached 0'

    callback.v2_playbook_on_stats(None)
    assert lines(callback)[-1] == '[progress] the run: hosts done 3/3, failed 1, held back 1, not reached 1'


def test_an_unreachable_host_outside_the_roles_and_a_repeated_result_printed_once(callback):
    callback.v2_playbook_on_play_start(Play('Upgrade the clients', ['client1', 'client2']))
    callback.v2_runner_on_ok(result('client1', report('client1', 'client', 'pending')))
    callback.v2_runner_on_ok(result('client1', report('client1', 'client', 'pending')))
    assert sum('client1 (client): pending' in line for line in lines(callback)) == 1
    callback.v2_runner_on_unreachable(result('client2', {'unreachable': True, 'msg': 'Failed to connect\nsecond line'}))
    assert lines(callback)[-2] == '[progress] client2: NOT REACHED: Failed to connect'
    assert lines(callback)[-1] == '[progress] Upgrade the clients: hosts done 1/2, failed 0, held back 0, not reached 1'


def test_ignored_failures_and_plain_results_print_nothing(callback):
    callback.v2_playbook_on_play_start(Play('a play', ['localhost']))
    callback.v2_runner_on_failed(result('localhost', {'failed': True, 'msg': 'x'}), ignore_errors=True)
    callback.v2_runner_on_ok(result('localhost', {'changed': False, 'msg': 'hello'}))
    callback.v2_runner_on_ok(result('localhost', {'changed': False, 'results': [{'msg': 'item'}]}))
    callback.v2_playbook_on_stats(None)
    assert lines(callback) == []


def test_silent_under_a_json_stdout_callback(callback, monkeypatch):
    monkeypatch.setattr(progress.C, 'DEFAULT_STDOUT_CALLBACK', 'ansible.posix.json', raising=False)
    quiet = progress.CallbackModule()
    quiet._display = Display()  # pylint: disable=protected-access
    quiet.v2_playbook_on_play_start(Play('p', ['server1']))
    quiet.v2_runner_on_ok(result('server1', CUTOVER_OK))
    assert quiet._display.lines == []  # pylint: disable=protected-access
    callback.v2_playbook_on_play_start(Play('p', ['server1']))
    callback.v2_runner_on_ok(result('server1', CUTOVER_OK))
    assert len(lines(callback)) == len(SERVER_STEPS) + 1


def test_documented_options_load(callback):
    callback.set_options(direct={'prefix': '>>', 'show_totals': False})
    callback.v2_playbook_on_play_start(Play('p', ['server1']))
    callback.v2_runner_on_ok(result('server1', report('server1', 'server', 'current')))
    assert lines(callback) == ['>> server1 (server): current 4.3.0 -> 4.4.0']
