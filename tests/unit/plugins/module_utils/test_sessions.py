"""Unit tests for sessions (the engine's users step), with real commands run through the real PosixHost."""
from __future__ import annotations

import sys

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import sessions
from ansible_collections.clinops.upgrade.plugins.module_utils.host import PosixHost, StepFailed

# a "product": who is logged on is a file; the message command writes the text and logs off the users named in it
WHO = 'import sys; print(open(sys.argv[1]).read(), end="")'
TELL = ('import sys; open(sys.argv[2], "a").write(sys.argv[3] + "\\n"); '
        'users = [u for u in open(sys.argv[1]).read().split() if u not in sys.argv[4].split(",")]; '
        'open(sys.argv[1], "w").write("\\n".join(users))')


class Clock:
    """A clock the sleeps advance (the waiting is real logic, not real seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def users(tmp_path, names, leaving, **extra):
    who = tmp_path / 'who'
    who.write_text('\n'.join(names))
    shown = tmp_path / 'shown'
    spec = dict(list_command=[sys.executable, '-c', WHO, str(who)],
                message_command=[sys.executable, '-c', TELL, str(who), str(shown), '{message}', ','.join(leaving)],
                text='Update auf {version} in {minutes} Minuten', max_wait=120, interval=5, on_timeout='proceed',
                command_timeout=30)
    spec.update(extra)
    return spec, shown


def test_all_users_leave_after_the_message(tmp_path):
    spec, shown = users(tmp_path, ['anna', 'jurg'], ['anna', 'jurg'])
    clock, warnings = Clock(), []
    data = sessions.tell_and_wait(PosixHost(None), spec, '9.2.0', str(tmp_path), warnings.append, clock=clock, sleep=clock.sleep)
    assert data['users_logged_on'] == ['anna', 'jurg'] and data['users_still_logged_on'] == []
    assert not data['users_timed_out'] and warnings == []
    assert shown.read_text() == 'Update auf 9.2.0 in 2 Minuten\n'


def test_one_stays_the_wait_passes_and_it_proceeds_naming_them(tmp_path):
    spec, dummy = users(tmp_path, ['anna', 'luca'], ['anna'])
    clock, warnings = Clock(), []
    data = sessions.tell_and_wait(PosixHost(None), spec, '9.2.0', str(tmp_path), warnings.append, clock=clock, sleep=clock.sleep)
    assert data['users_still_logged_on'] == ['luca'] and data['users_timed_out']
    assert data['users_waited_s'] >= 120
    assert 'luca' in warnings[0]


def test_on_timeout_fail_stops_before_anything_stops(tmp_path):
    spec, dummy = users(tmp_path, ['luca'], [], on_timeout='fail', max_wait=10)
    clock = Clock()
    with pytest.raises(StepFailed) as failed:
        sessions.tell_and_wait(PosixHost(None), spec, '9.2.0', str(tmp_path), print, clock=clock, sleep=clock.sleep)
    assert 'luca' in failed.value.msg and 'nothing was stopped' in failed.value.msg


def test_a_failing_list_command_is_named(tmp_path):
    spec, dummy = users(tmp_path, [], [], list_command=[sys.executable, '-c', 'import sys; sys.exit("no server")'])
    with pytest.raises(StepFailed) as failed:
        sessions.tell_and_wait(PosixHost(None), spec, '9.2.0', str(tmp_path), print)
    assert 'list_command' in failed.value.msg and 'no server' in failed.value.msg


@pytest.mark.parametrize('spec, expected', [
    (dict(list_command=['who']), []),
    (dict(list_command=[]), ['list_command']),
    (dict(list_command=['who'], message_command=['tell', 'x']), ['{message}']),
    (dict(list_command=['who'], text='hi'), ['message_command']),
    (dict(list_command=['who'], interval=0), ['interval']),
])
def test_problems(spec, expected):
    found = sessions.problems(spec)
    assert len(found) == len(expected) and all(e in f for e, f in zip(expected, found))
