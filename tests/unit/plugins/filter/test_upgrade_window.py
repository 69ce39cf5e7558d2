# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters upgrade_window and upgrade_schedule and the test upgrade_window_open, as Jinja calls them."""

from __future__ import annotations

import datetime as dt

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.clinops.upgrade.plugins.filter.upgrade_window import FilterModule
from ansible_collections.clinops.upgrade.plugins.test.upgrade_window_open import TestModule as WindowTests

FILTERS = FilterModule().filters()
TESTS = WindowTests().tests()
KSAMU = {'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'forbidden_weekdays': ['sunday']}


def test_the_plugins_are_registered_under_their_names():
    assert sorted(FILTERS) == ['upgrade_schedule', 'upgrade_window']
    assert sorted(TESTS) == ['upgrade_window_open']


@pytest.mark.parametrize('now, allowed', [
    ('2026-11-30T05:59:00+03:00', True),
    ('2026-11-30T06:00:00+03:00', False),
    ('2026-11-30T20:59:00+03:00', False),
    ('2026-11-30T21:00:00+03:00', True),
    ('2026-12-06T23:00:00+03:00', False),     # a Sunday
])
def test_filter_and_test_agree(now, allowed):
    verdict = FILTERS['upgrade_window'](KSAMU, now=now, timezone='Europe/Moscow')
    assert verdict['allowed'] is allowed
    assert TESTS['upgrade_window_open'](KSAMU, now=now, timezone='Europe/Moscow') is allowed


def test_the_filter_takes_what_jinja_gives():
    """Empty strings for unset arguments (an inventory's default('')), datetimes from now(), tuples for lists."""
    spec = {'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'forbidden_weekdays': ('sun',), 'timezone': 'Europe/Moscow'}
    verdict = FILTERS['upgrade_window'](spec, now=dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.timezone.utc), timezone='')
    assert verdict['allowed'] is True
    assert FILTERS['upgrade_window']({}, now='', timezone='')['allowed'] is True
    assert FILTERS['upgrade_window'](KSAMU, now='2026-11-30T12:00:00+03:00', timezone='Europe/Moscow', run_now=True)['allowed'] is True


def test_bad_input_is_a_filter_error_naming_the_key():
    with pytest.raises(AnsibleFilterError, match="upgrade_window.days: 'weekends' is not one of all, even, odd"):
        FILTERS['upgrade_window']({'days': 'weekends'}, timezone='UTC')
    with pytest.raises(AnsibleFilterError, match='no time zone'):
        TESTS['upgrade_window_open'](KSAMU)
    with pytest.raises(AnsibleFilterError, match='45min does not divide an hour'):
        FILTERS['upgrade_schedule']({'start': '21:00', 'period': '45min'}, timezone='UTC')


def test_the_schedule_filter():
    forms = FILTERS['upgrade_schedule']({'start': '21:00', 'period': '30min'}, timezone='Europe/Moscow', now='2026-11-30T12:00:00Z')
    assert forms['on_calendar'] == '*-*-* *:00/30:00 Europe/Moscow'
    assert forms['cron'] == '0-59/30 * * * *'
    assert forms['rrule'] == 'DTSTART;TZID=Europe/Moscow:20261130T210000 RRULE:FREQ=MINUTELY;INTERVAL=30'


def test_the_profiles_window_and_schedule_are_the_defaults():
    profile = {'name': 'ksamu', 'window': {'forbidden_hours': {'from': '06:00', 'to': '21:00'}},
               'schedule': {'start': '21:00', 'period': 'hourly'}}
    now = '2026-11-30T12:00:00+03:00'
    assert FILTERS['upgrade_window']({}, now=now, timezone='Europe/Moscow', profile=profile)['allowed'] is False
    assert FILTERS['upgrade_window']({'forbidden_hours': None}, now=now, timezone='Europe/Moscow', profile=profile)['allowed'] is True
    assert TESTS['upgrade_window_open']({}, now=now, timezone='Europe/Moscow', profile=profile) is False
    forms = FILTERS['upgrade_schedule']({'period': '30min'}, timezone='Europe/Moscow', now=now, profile=profile)
    assert forms['on_calendar'] == '*-*-* *:00/30:00 Europe/Moscow'
