"""Unit tests for upgrade_journal: attempts, resume data, downtime, the lock's takeover rules, whole runs of main()."""
from __future__ import annotations

import json
import os
import time

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils import journal
from ansible_collections.clinops.upgrade.plugins.modules import upgrade_journal


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patch_exits(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(upgrade_journal.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(upgrade_journal.AnsibleModule, 'fail_json', fail_json)


def run(args, expect=ExitJson):
    with patch_module_args(args):
        with pytest.raises(expect) as info:
            upgrade_journal.main()
    return info.value.args[0]


def entry(step, result, attempt=1, started='2025-01-01T10:00:00.000+00:00', ended=None, **extra):
    out = dict(step=step, result=result, attempt=attempt, target='4.4.0', started=started, data=extra.pop('data', {}))
    if ended:
        out['ended'] = ended
    out.update(extra)
    return out


def test_attempt_state_open_done_data_and_downtime():
    entries = [
        entry('begin', 'ok', data={'from_version': '4.3.0'}),
        entry('stop', 'started', started='2025-01-01T10:00:10.000+00:00'),
        entry('stop', 'ok', started='2025-01-01T10:00:10.000+00:00', ended='2025-01-01T10:00:12.000+00:00',
              data={'previously_running': ['a']}),
        entry('swap', 'started'),
        entry('verify', 'ok', started='2025-01-01T10:00:20.000+00:00', ended='2025-01-01T10:00:40.500+00:00'),
    ]
    state = journal.attempt_state(entries, '4.4.0')
    assert state['open'] is True
    assert state['done'] == ['stop', 'verify']
    assert state['started_steps'] == ['swap']
    assert state['data'] == {'from_version': '4.3.0', 'previously_running': ['a']}
    assert state['downtime_s'] == 30.5


def test_attempt_state_finished_and_other_targets():
    entries = [entry('begin', 'ok'), entry('finish', 'rolled_back'), entry('begin', 'ok', attempt=1, target='9.9')]
    state = journal.attempt_state(entries, '4.4.0')
    assert state['open'] is False and state['result'] == 'rolled_back'
    assert journal.attempt_state([], '4.4.0')['number'] == 0


def test_lock_rules(monkeypatch):
    assert journal.judge_lock({}, False, 'r1', 60) == (True, 'free')
    assert journal.judge_lock({'run_id': 'r1'}, True, 'r1', 60)[0] is True
    stale = {'run_id': 'r0', 'heartbeat_epoch': time.time() - 120}
    assert journal.judge_lock(stale, True, 'r1', 60)[0] is True
    fresh = {'run_id': 'r0', 'heartbeat_epoch': time.time()}
    assert journal.judge_lock(fresh, True, 'r1', 60)[0] is False
    monkeypatch.setattr(journal, 'boot_id', lambda: 'b')
    monkeypatch.setattr(journal.socket, 'gethostname', lambda: 'h')
    gone = {'run_id': 'r0', 'pid': 999999, 'boot_id': 'b', 'host': 'h', 'heartbeat_epoch': time.time()}
    ok, reason = journal.judge_lock(gone, True, 'r1', 3600)
    assert ok and 'gone' in reason


def test_record_lock_unlock_roundtrip(tmp_path):
    path = str(tmp_path / 'state' / 'journal.jsonl')
    base = dict(path=path, target='4.4.0', run_id='r1')
    failed = run(dict(base, op='record', step='stop'), FailJson)
    assert 'begin' in failed['msg']
    assert run(dict(base, op='lock'))['changed'] is True
    assert run(dict(base, op='lock'))['changed'] is False
    assert run(dict(base, op='lock', run_id='r2'), FailJson)['failed']
    run(dict(base, op='record', step='begin', data={'from_version': '4.3.0'}))
    run(dict(base, op='record', step='stop', result='started'))
    out = run(dict(base, op='record', step='stop', data={'previously_running': ['x']}))
    assert out['attempt']['done'] == ['stop'] and out['attempt']['number'] == 1
    assert out['entry']['started'] <= out['entry']['ended']
    with open(path, encoding='utf-8') as handle:
        assert [json.loads(line)['step'] for line in handle] == ['begin', 'stop', 'stop']
    assert run(dict(base, op='unlock'))['changed'] is True
    assert not os.path.exists(str(tmp_path / 'state' / 'upgrade.lock'))
    run(dict(base, op='record', step='finish', result='upgraded'))
    assert run(dict(base, op='record', step='begin'))['attempt']['number'] == 2


def test_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / 'journal.jsonl')
    out = run(dict(path=path, op='record', target='1', step='begin', run_id='r', _ansible_check_mode=True))
    assert out['changed'] is True
    assert not os.path.exists(path)


def test_begin_and_finish_lock_record_and_release_in_one_call(tmp_path):
    path = str(tmp_path / 'state' / 'journal.jsonl')
    lock = str(tmp_path / 'state' / 'upgrade.lock')
    base = dict(path=path, target='4.4.0', run_id='r1')
    out = run(dict(base, op='begin', data={'from_version': '4.3.0'}))
    assert out['lock']['held'] and os.path.exists(lock)
    assert out['attempt']['open'] and out['attempt']['number'] == 1 and out['attempt']['data']['from_version'] == '4.3.0'
    # another run is refused before it writes anything
    failed = run(dict(base, op='begin', run_id='r2'), FailJson)
    assert 'another upgrade is running' in failed['msg']
    assert [json.loads(line)['run_id'] for line in open(path, encoding='utf-8')] == ['r1']
    # a rerun of the same run resumes the same attempt
    assert run(dict(base, op='begin'))['attempt']['number'] == 1
    out = run(dict(base, op='finish', result='upgraded'))
    assert out['attempt']['open'] is False and out['attempt']['result'] == 'upgraded'
    assert not os.path.exists(lock)
    assert run(dict(base, op='begin', run_id='r3'))['attempt']['number'] == 2


def test_finish_leaves_another_runs_lock_alone(tmp_path):
    path = str(tmp_path / 'journal.jsonl')
    base = dict(path=path, target='4.4.0')
    run(dict(base, op='begin', run_id='r1'))
    out = run(dict(base, op='finish', run_id='r2', result='failed'))
    assert out['attempt']['result'] == 'failed'
    assert os.path.exists(str(tmp_path / 'upgrade.lock'))
