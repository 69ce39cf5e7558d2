"""The upgrade window guard at the start of playbooks/upgrade.yml, on the lab (lab/build_lab.py, PMOD).

The moment is pinned with upgrade_window_now (for tests only) in Moscow time, which is not the controller's zone.
Outside the window the run ends green, touches no host (versions, files and journal unchanged, no report) and says
when the next allowed moment is; inside it (and outside it when started by hand with upgrade_run_now) the upgrade
goes ahead: check mode up to the plan, then one real upgrade.
"""
import os

import pytest

from labtools import ENV, PLAYBOOK, Lab  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

KSAMU_LIKE = {'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'days': 'all', 'forbidden_weekdays': ['sunday']}
GUARD = 'Say whether the upgrade may run now, and when next'


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('window') / 'lab')
    inventory = build_lab.build(root, clients=1, servers=1, rows=200, quiet=True, product='pmod')
    site = Lab(root, inventory)
    site.set_var('upgrade_timezone', 'Europe/Moscow')
    site.set_var('upgrade_window', KSAMU_LIKE)
    yield site
    build_lab.teardown(root, quiet=True)


def reports(lab):
    folder = os.path.join(lab.root, 'reports')
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def guard_message(result):
    messages = {h['msg'] for t in result.tasks if t['task']['name'].endswith(GUARD) for h in t['hosts'].values()}
    assert len(messages) == 1, (messages, result)
    return messages.pop()


def ran(result):
    """The names of the tasks that ran (not skipped) on any host."""
    return {t['task']['name'] for t in result.tasks if any(not h.get('skipped') for h in t['hosts'].values())}


@pytest.mark.parametrize('now, why, next_allowed', [
    ('2026-11-30T06:00:00+03:00', 'forbidden hours 06:00-21:00 Europe/Moscow', '2026-11-30 21:00 MSK'),
    ('2026-11-30T17:59:00Z', 'forbidden hours 06:00-21:00 Europe/Moscow', '2026-11-30 21:00 MSK'),   # 20:59 in Moscow
    ('2026-12-06T22:00:00+03:00', 'forbidden weekday Sunday', '2026-12-07 00:00 MSK'),
])
def test_outside_the_window_the_run_ends_green_and_touches_nothing(lab, now, why, next_allowed):
    before_tree, before_dump, before_reports = lab.tree_hash(), lab.dump(), reports(lab)
    result = run_playbook(PLAYBOOK, inventory=lab.inventory, env=dict(ENV, ANSIBLE_SHOW_CUSTOM_STATS='true'),
                          args=['-e', 'upgrade_window_now=' + now])
    assert result.rc == 0, result
    message = guard_message(result)
    assert message.startswith('upgrade window: nothing done, not now')
    assert why in message and ('next allowed ' + next_allowed) in message, message
    # no host touched: nothing changed, no journal, no report, no task of preflight or of the upgrade ran
    assert lab.tree_hash() == before_tree
    assert lab.dump() == before_dump
    assert [lab.version(h) for h in lab.hosts] == [build_lab.OLD_VERSION] * len(lab.hosts)
    assert lab.journal() == [] and lab.journal(lab.clients[0]) == []
    assert reports(lab) == before_reports
    assert not any('preflight' in name.lower() or 'report' in name.lower() for name in ran(result)), ran(result)
    for host, stats in result.stats.items():
        assert stats['changed'] == 0 and stats['failures'] == 0 and stats['unreachable'] == 0, (host, stats)
    # the verdict is published for AWX
    verdict = result.data['global_custom_stats']['upgrade_window']
    assert verdict['allowed'] is False and verdict['next_allowed_local'] == next_allowed


def test_the_profiles_window_is_the_default(lab):
    """No upgrade_window in the inventory: the profile's window (here through the site's overrides) is judged."""
    before_tree = lab.tree_hash()
    extra = {'upgrade_window': {}, 'upgrade_window_now': '2026-11-30T12:00:00+03:00',      # 14:00 in Yekaterinburg
             'upgrade_profile_overrides': {'window': {'timezone': 'Asia/Yekaterinburg', 'days': 'odd'}}}
    result = lab.run(extra_vars=extra)
    assert result.rc == 0, result
    message = guard_message(result)
    assert 'only on odd days of the month (30 Nov is even)' in message, message
    assert 'next allowed 2026-12-01 00:00 +05 (2026-12-01T00:00:00+05:00)' in message, message
    assert lab.tree_hash() == before_tree and lab.journal() == []


@pytest.mark.parametrize('extra', [
    ['-e', 'upgrade_window_now=2026-11-30T05:59:00+03:00'],                            # just before the forbidden hours
    ['-e', 'upgrade_window_now=2026-11-30T18:00:00Z'],                                 # 21:00 in Moscow
    ['-e', 'upgrade_window_now=2026-11-30T12:00:00+03:00', '-e', 'upgrade_run_now=true'],   # by hand, "run now"
])
def test_inside_the_window_or_by_hand_the_upgrade_goes_ahead(lab, extra):
    before_tree = lab.tree_hash()
    result = lab.run(check=True, args=extra)
    assert result.rc == 0, result
    message = guard_message(result)
    assert message.startswith('upgrade window: allowed now') or message.startswith('upgrade window: started by hand'), message
    assert any(name.endswith('Show what preflight found') for name in ran(result)), ran(result)
    plan = {h['host']: h for h in lab.report()['hosts']}
    assert plan['server1']['result'] == 'planned'
    assert lab.tree_hash() == before_tree          # check mode


def test_a_bad_window_fails_before_any_host_is_touched(lab):
    before_tree = lab.tree_hash()
    result = lab.run(args=['-e', '{"upgrade_window": {"forbidden_hours": {"from": "06:00", "to": "25:00"}}}'])
    assert result.rc != 0
    assert "upgrade_window.forbidden_hours.to: '25:00' is not a time of day" in result.stdout
    assert lab.tree_hash() == before_tree
    assert lab.journal() == []


def test_inside_the_window_the_upgrade_runs(lab):
    result = lab.run(args=['-e', 'upgrade_window_now=2026-11-30T23:30:00+03:00'])
    assert result.rc == 0, result
    assert [lab.version(h) for h in lab.hosts] == [build_lab.NEW_VERSION] * len(lab.hosts)
    assert lab.report()['hosts'][0]['result'] == 'upgraded'
    assert any(e['step'] == 'verify' for e in lab.journal())
