# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The window (may a run go ahead, when next) and the schedule's forms, judged at pinned moments."""

from __future__ import annotations

import datetime as dt
import os
import time as time_module
from zoneinfo import ZoneInfo

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.window import (
    WindowError, judge, parse_now, parse_schedule, parse_window, schedule_forms, schedule_spec, window_spec)

MOSCOW = ZoneInfo('Europe/Moscow')
BERLIN = ZoneInfo('Europe/Berlin')
KSAMU = {'timezone': 'Europe/Moscow', 'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'days': 'all'}
CONAKTIV = {'timezone': 'Europe/Berlin', 'start_date': '2026-12-05', 'from': '22:00', 'to': '05:00'}


def at(text, tz=MOSCOW):
    """A local wall-clock moment of the site: '2026-11-30 05:59'."""
    return dt.datetime.strptime(text, '%Y-%m-%d %H:%M').replace(tzinfo=tz)


# 2026-11-30 is a Monday (even day), 2026-12-01 a Tuesday (odd), 2026-12-06 a Sunday.
@pytest.mark.parametrize('moment, allowed, next_allowed', [
    ('2026-11-30 05:59', True, '2026-11-30T05:59:00+03:00'),
    ('2026-11-30 06:00', False, '2026-11-30T21:00:00+03:00'),
    ('2026-11-30 12:00', False, '2026-11-30T21:00:00+03:00'),
    ('2026-11-30 20:59', False, '2026-11-30T21:00:00+03:00'),
    ('2026-11-30 21:00', True, '2026-11-30T21:00:00+03:00'),
    ('2026-11-30 23:59', True, '2026-11-30T23:59:00+03:00'),
    ('2026-11-30 00:00', True, '2026-11-30T00:00:00+03:00'),
])
def test_ksamu_forbidden_hours_edges(moment, allowed, next_allowed):
    verdict = judge(KSAMU, now=at(moment))
    assert verdict['allowed'] is allowed
    assert verdict['next_allowed'] == next_allowed
    assert verdict['timezone'] == 'Europe/Moscow'


def test_one_second_before_the_forbidden_hours_is_allowed():
    assert judge(KSAMU, now=at('2026-11-30 05:59') + dt.timedelta(seconds=59))['allowed'] is True
    assert judge(KSAMU, now=at('2026-11-30 20:59') + dt.timedelta(seconds=59))['allowed'] is False


def test_the_reason_names_the_rule_the_zone_and_the_next_time():
    verdict = judge(KSAMU, now=at('2026-11-30 06:00'))
    assert verdict['reason'] == ('not now (2026-11-30 06:00 MSK): forbidden hours 06:00-21:00 Europe/Moscow; '
                                 'next allowed 2026-11-30 21:00 MSK (2026-11-30T21:00:00+03:00)')
    assert verdict['next_allowed_local'] == '2026-11-30 21:00 MSK'
    assert verdict['now'] == '2026-11-30T06:00:00+03:00'


def test_the_site_zone_not_the_controllers():
    """03:00 UTC is 06:00 in Moscow (forbidden) and 04:00 in Berlin (allowed); the controller's own zone plays no part."""
    moment = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc)
    assert judge(KSAMU, now=moment)['allowed'] is False
    berlin = dict(KSAMU, timezone='Europe/Berlin')
    assert judge(berlin, now=moment)['allowed'] is True
    assert judge(berlin, now=moment)['now'] == '2026-11-30T04:00:00+01:00'
    # next allowed 21:00 in Moscow is 18:00 UTC
    assert parse_now(judge(KSAMU, now=moment)['next_allowed']) == dt.datetime(2026, 11, 30, 18, 0, tzinfo=dt.timezone.utc)


def test_the_controllers_zone_does_not_matter(monkeypatch):
    if not hasattr(time_module, 'tzset'):
        pytest.skip('no tzset')
    moment = '2026-11-30T02:59:00Z'   # 05:59 in Moscow
    verdicts = []
    for zone in ('UTC', 'America/New_York', 'Asia/Tokyo'):
        monkeypatch.setenv('TZ', zone)
        time_module.tzset()
        verdicts.append(judge(KSAMU, now=moment))
    monkeypatch.delenv('TZ')
    time_module.tzset()
    assert all(v == verdicts[0] for v in verdicts)
    assert verdicts[0]['allowed'] is True


@pytest.mark.parametrize('forbidden, moment, allowed, next_allowed', [
    ({'from': '22:00', 'to': '02:00'}, '2026-11-30 21:59', True, '2026-11-30T21:59:00+03:00'),
    ({'from': '22:00', 'to': '02:00'}, '2026-11-30 22:00', False, '2026-12-01T02:00:00+03:00'),
    ({'from': '22:00', 'to': '02:00'}, '2026-12-01 00:00', False, '2026-12-01T02:00:00+03:00'),
    ({'from': '22:00', 'to': '02:00'}, '2026-12-01 01:59', False, '2026-12-01T02:00:00+03:00'),
    ({'from': '22:00', 'to': '02:00'}, '2026-12-01 02:00', True, '2026-12-01T02:00:00+03:00'),
])
def test_forbidden_hours_wrapping_midnight(forbidden, moment, allowed, next_allowed):
    verdict = judge({'timezone': 'Europe/Moscow', 'forbidden_hours': forbidden}, now=at(moment))
    assert (verdict['allowed'], verdict['next_allowed']) == (allowed, next_allowed)


@pytest.mark.parametrize('days, moment, allowed, next_allowed', [
    ('even', '2026-11-30 23:00', True, '2026-11-30T23:00:00+03:00'),
    ('even', '2026-12-01 23:00', False, '2026-12-02T00:00:00+03:00'),
    ('odd', '2026-11-30 23:00', False, '2026-12-01T00:00:00+03:00'),
    ('odd', '2026-12-01 03:00', True, '2026-12-01T03:00:00+03:00'),
    # 31 Dec and 1 Jan are both odd: the next even day after 31 Dec is 2 Jan
    ('even', '2026-12-31 22:00', False, '2027-01-02T00:00:00+03:00'),
    ('odd', '2026-12-31 22:00', True, '2026-12-31T22:00:00+03:00'),
    ('odd', '2027-01-01 10:00', False, '2027-01-01T21:00:00+03:00'),
    ('all', '2026-12-01 23:00', True, '2026-12-01T23:00:00+03:00'),
])
def test_even_and_odd_days_with_the_forbidden_hours(days, moment, allowed, next_allowed):
    verdict = judge(dict(KSAMU, days=days), now=at(moment))
    assert (verdict['allowed'], verdict['next_allowed']) == (allowed, next_allowed)
    wrong_day = (at(moment).day % 2 == 0) != (days == 'even')
    assert ('only on %s days of the month' % days in verdict['reason']) is (not allowed and wrong_day)


@pytest.mark.parametrize('forbidden, moment, allowed, next_allowed', [
    (['sunday'], '2026-12-05 23:00', True, '2026-12-05T23:00:00+03:00'),      # Saturday night
    (['sunday'], '2026-12-06 00:00', False, '2026-12-07T00:00:00+03:00'),     # Sunday: Monday 00:00 is allowed
    (['Sun'], '2026-12-06 23:30', False, '2026-12-07T00:00:00+03:00'),
    ([7], '2026-12-06 23:30', False, '2026-12-07T00:00:00+03:00'),
    (['7'], '2026-12-06 23:30', False, '2026-12-07T00:00:00+03:00'),
    (['saturday', 'SUNDAY'], '2026-12-05 23:00', False, '2026-12-07T00:00:00+03:00'),
    ([1, 2, 3, 4, 5], '2026-11-30 12:00', False, '2026-12-05T00:00:00+03:00'),  # only the weekend, outside 06-21
])
def test_forbidden_weekdays(forbidden, moment, allowed, next_allowed):
    verdict = judge(dict(KSAMU, forbidden_weekdays=forbidden), now=at(moment))
    assert (verdict['allowed'], verdict['next_allowed']) == (allowed, next_allowed)
    if not allowed:
        assert 'forbidden weekday' in verdict['reason'] or 'forbidden hours' in verdict['reason']


def test_only_on_weekdays():
    spec = {'timezone': 'Europe/Moscow', 'weekdays': ['sat', 'sun'], 'from': '01:00', 'to': '03:00'}
    verdict = judge(spec, now=at('2026-11-30 02:00'))
    assert verdict['allowed'] is False
    assert verdict['next_allowed'] == '2026-12-05T01:00:00+03:00'
    assert 'only on Saturday, Sunday (2026-11-30 is a Monday)' in verdict['reason']


def test_forbidden_weekday_with_even_days_waits_for_both():
    """Sunday 6 Dec is even but forbidden, Monday 7 Dec odd: the next allowed is Tuesday 8 Dec 00:00."""
    spec = dict(KSAMU, days='even', forbidden_weekdays=['sunday'])
    verdict = judge(spec, now=at('2026-12-05 23:00'))
    assert verdict['next_allowed'] == '2026-12-08T00:00:00+03:00'


@pytest.mark.parametrize('moment, allowed, next_allowed', [
    ('2026-11-30 13:00', False, '2026-12-05T22:00:00+01:00'),
    ('2026-12-05 21:59', False, '2026-12-05T22:00:00+01:00'),
    ('2026-12-05 22:00', True, '2026-12-05T22:00:00+01:00'),
    ('2026-12-06 00:30', True, '2026-12-06T00:30:00+01:00'),   # after midnight: the window that opened on the 5th
    ('2026-12-06 04:59', True, '2026-12-06T04:59:00+01:00'),
    ('2026-12-06 05:00', False, ''),
    ('2026-12-06 22:00', False, ''),                           # the 6th's window is not the start date's
    ('2026-12-05 04:00', False, '2026-12-05T22:00:00+01:00'),  # the early hours of the 5th belong to the 4th's window
])
def test_conaktiv_start_date_and_window(moment, allowed, next_allowed):
    verdict = judge(CONAKTIV, now=at(moment, BERLIN))
    assert (verdict['allowed'], verdict['next_allowed']) == (allowed, next_allowed)
    if next_allowed == '':
        assert 'never again (the start date 2026-12-05 has passed)' in verdict['reason']


def test_conaktiv_from_a_controller_in_utc():
    verdict = judge(CONAKTIV, now='2026-12-05T21:30:00Z')     # 22:30 in Berlin
    assert verdict['allowed'] is True
    assert verdict['now'] == '2026-12-05T22:30:00+01:00'


def test_a_window_inside_the_day():
    spec = {'timezone': 'Europe/Berlin', 'from': '12:00', 'to': '13:00'}
    assert judge(spec, now=at('2026-11-30 11:59', BERLIN))['next_allowed'] == '2026-11-30T12:00:00+01:00'
    assert judge(spec, now=at('2026-11-30 12:59', BERLIN))['allowed'] is True
    assert judge(spec, now=at('2026-11-30 13:00', BERLIN))['next_allowed'] == '2026-12-01T12:00:00+01:00'


# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (02:xx does not exist); 2026-10-25 03:00 CEST -> 02:00 CET
# (02:xx happens twice).
@pytest.mark.parametrize('spec, moment, allowed, next_allowed', [
    # a window opening in the hour that does not exist opens when the clocks go forward
    ({'from': '02:30', 'to': '04:00'}, '2026-03-29T00:30:00Z', False, '2026-03-29T03:00:00+02:00'),
    ({'from': '02:30', 'to': '04:00'}, '2026-03-29T01:00:00Z', True, '2026-03-29T03:00:00+02:00'),
    ({'from': '02:30', 'to': '04:00'}, '2026-03-30T00:00:00Z', False, '2026-03-30T02:30:00+02:00'),
    # forbidden hours that end in the missing hour end with it
    ({'forbidden_hours': {'from': '01:00', 'to': '02:30'}}, '2026-03-29T00:30:00Z', False, '2026-03-29T03:00:00+02:00'),
    # the repeated hour: the window opens at its first 02:30, and again at the second one
    ({'from': '02:30', 'to': '02:45'}, '2026-10-25T00:10:00Z', False, '2026-10-25T02:30:00+02:00'),
    ({'from': '02:30', 'to': '02:45'}, '2026-10-25T00:50:00Z', False, '2026-10-25T02:30:00+01:00'),
    ({'from': '02:30', 'to': '02:45'}, '2026-10-25T01:35:00Z', True, '2026-10-25T02:35:00+01:00'),
    # the clocks going back re-enter an allowed wall time: allowed again from the change itself
    ({'from': '01:00', 'to': '02:30'}, '2026-10-25T00:40:00Z', False, '2026-10-25T02:00:00+01:00'),
    # forbidden 02:00-03:00 lasts two real hours on the day the clocks go back
    ({'forbidden_hours': {'from': '02:00', 'to': '03:00'}}, '2026-10-25T00:00:00Z', False, '2026-10-25T03:00:00+01:00'),
    ({'forbidden_hours': {'from': '02:00', 'to': '03:00'}}, '2026-10-25T01:59:00Z', False, '2026-10-25T03:00:00+01:00'),
    ({'forbidden_hours': {'from': '02:00', 'to': '03:00'}}, '2026-10-25T02:00:00Z', True, '2026-10-25T03:00:00+01:00'),
    # KSAMU's 06:00-21:00 in Berlin on both change days
    ({'forbidden_hours': {'from': '06:00', 'to': '21:00'}}, '2026-03-29T04:00:00Z', False, '2026-03-29T21:00:00+02:00'),
    ({'forbidden_hours': {'from': '06:00', 'to': '21:00'}}, '2026-10-25T05:00:00Z', False, '2026-10-25T21:00:00+01:00'),
])
def test_daylight_saving_days(spec, moment, allowed, next_allowed):
    verdict = judge(dict(spec, timezone='Europe/Berlin'), now=moment)
    assert (verdict['allowed'], verdict['next_allowed']) == (allowed, next_allowed)
    if not allowed:
        # the moment found is allowed, and one second before it is not
        found = parse_now(next_allowed)
        assert judge(dict(spec, timezone='Europe/Berlin'), now=found)['allowed'] is True
        assert judge(dict(spec, timezone='Europe/Berlin'), now=found - dt.timedelta(seconds=1))['allowed'] is False


def test_next_allowed_is_the_earliest_found_by_walking_the_minutes():
    """Brute force over three days of minutes around both Berlin clock changes, for a mixed window."""
    spec = {'timezone': 'Europe/Berlin', 'from': '01:30', 'to': '02:15', 'forbidden_hours': {'from': '02:00', 'to': '02:05'},
            'days': 'odd'}
    window = parse_window(spec)
    for start in ('2026-03-27T20:00:00Z', '2026-10-23T20:00:00Z'):
        begin = parse_now(start)
        minutes = [begin + dt.timedelta(minutes=m) for m in range(0, 3 * 24 * 60)]
        allowed = [not window.problems_at(m) for m in minutes]
        for index in range(0, len(minutes), 37):
            expected = next((m for m, ok in zip(minutes[index:], allowed[index:]) if ok), None)
            if expected is None:
                continue
            assert window.next_allowed(minutes[index]) == expected, minutes[index]


def test_no_window_means_any_time():
    for spec in ({}, None, {'days': 'all'}, {'timezone': None, 'from': None, 'to': None}):
        verdict = judge(spec, now='2026-11-30T06:00:00+03:00')
        assert verdict['allowed'] is True
        assert verdict['reason'] == 'no window configured: any time'


def test_run_now_skips_the_window_and_says_so():
    verdict = judge(KSAMU, now=at('2026-11-30 12:00'), run_now=True)
    assert verdict['allowed'] is True
    assert verdict['run_now'] is True
    assert verdict['reason'].startswith('started by hand (upgrade_run_now)')
    assert 'forbidden hours 06:00-21:00' in verdict['reason']


def test_the_timezone_argument_is_the_default():
    spec = {'forbidden_hours': {'from': '06:00', 'to': '21:00'}}
    assert judge(spec, now='2026-11-30T03:00:00Z', timezone='Europe/Moscow')['allowed'] is False
    assert judge(dict(spec, timezone='Europe/Berlin'), now='2026-11-30T03:00:00Z', timezone='Europe/Moscow')['allowed'] is True


def test_the_real_clock_is_the_default():
    verdict = judge(KSAMU)
    moment = parse_now(verdict['now'])
    assert abs((moment - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 300
    assert verdict['now'].endswith('+03:00')


@pytest.mark.parametrize('spec, message', [
    ('06:00-21:00', 'upgrade_window: a mapping of'),
    ({'forbiden_hours': {'from': '06:00', 'to': '21:00'}, 'timezone': 'UTC'}, 'unknown key forbiden_hours'),
    ({'forbidden_hours': {'from': '06:00', 'to': '21:00'}}, 'no time zone: set upgrade_timezone'),
    ({'timezone': 'Europe/Moskow', 'days': 'odd'}, "unknown time zone 'Europe/Moskow'"),
    ({'timezone': 5, 'days': 'odd'}, 'a time zone is an IANA name'),
    ({'timezone': 'UTC', 'from': '25:00', 'to': '05:00'}, "upgrade_window.from: '25:00' is not a time of day"),
    ({'timezone': 'UTC', 'from': '6:00', 'to': '05:00'}, "'6:00' is not a time of day"),
    ({'timezone': 'UTC', 'from': 1260, 'to': '05:00'}, 'YAML reads an unquoted 21:00 as the number 1260; write "21:00"'),
    ({'timezone': 'UTC', 'from': '22:00'}, 'from without to'),
    ({'timezone': 'UTC', 'to': '22:00'}, 'to without from'),
    ({'timezone': 'UTC', 'from': '22:00', 'to': '22:00'}, 'from and to are both 22:00'),
    ({'timezone': 'UTC', 'forbidden_hours': {'from': '06:00'}}, 'forbidden_hours: to missing'),
    ({'timezone': 'UTC', 'forbidden_hours': {'from': '06:00', 'to': '06:00'}}, 'which leaves no time'),
    ({'timezone': 'UTC', 'forbidden_hours': {'from': '06:00', 'to': '21:00', 'days': 'x'}}, 'forbidden_hours: unknown key days'),
    ({'timezone': 'UTC', 'forbidden_hours': ['06:00', '21:00']}, 'forbidden_hours: a mapping'),
    ({'timezone': 'UTC', 'days': 'weekdays'}, "upgrade_window.days: 'weekdays' is not one of all, even, odd"),
    ({'timezone': 'UTC', 'forbidden_weekdays': [0]}, 'forbidden_weekdays[0]: 0 is not a weekday: ISO numbers run from Monday=1'),
    ({'timezone': 'UTC', 'forbidden_weekdays': [8]}, '8 is not a weekday'),
    ({'timezone': 'UTC', 'forbidden_weekdays': ['sonntag']}, "'sonntag' is not a weekday"),
    ({'timezone': 'UTC', 'forbidden_weekdays': [True]}, 'True is not a weekday'),
    ({'timezone': 'UTC', 'forbidden_weekdays': []}, 'a list of weekdays'),
    ({'timezone': 'UTC', 'forbidden_weekdays': list(range(1, 8))}, 'all seven days are forbidden'),
    ({'timezone': 'UTC', 'weekdays': ['mon'], 'forbidden_weekdays': ['monday']}, 'which leaves no day'),
    ({'timezone': 'UTC', 'start_date': '2026-02-30'}, "start_date: '2026-02-30' is not a date"),
    ({'timezone': 'UTC', 'start_date': '05.12.2026'}, 'is not a date "YYYY-MM-DD"'),
])
def test_bad_windows_are_refused_with_the_key(spec, message):
    with pytest.raises(WindowError) as caught:
        judge(spec, now='2026-11-30T12:00:00Z')
    assert message in str(caught.value)


def test_yaml_dates_and_comma_lists_are_accepted():
    spec = {'timezone': 'Europe/Berlin', 'start_date': dt.date(2026, 12, 5), 'from': '22:00', 'to': '05:00',
            'forbidden_weekdays': 'mon, tue'}
    assert judge(spec, now='2026-12-05T21:30:00Z')['allowed'] is True


@pytest.mark.parametrize('now, message', [
    ('yesterday', "now: 'yesterday' is not an ISO 8601 moment"),
    ('2026-11-30T05:59:00', 'has no offset'),
    (dt.datetime(2026, 11, 30, 5, 59), 'has no offset'),
    (1700000000, 'is not a moment'),
])
def test_bad_now_is_refused(now, message):
    with pytest.raises(WindowError) as caught:
        judge(KSAMU, now=now)
    assert message in str(caught.value)


def test_never_when_the_start_date_is_not_an_allowed_day():
    """The start date 1 Dec is odd but only even days are allowed: the window never opens, and says so."""
    spec = {'timezone': 'UTC', 'start_date': '2026-12-01', 'days': 'even'}
    verdict = judge(spec, now='2026-11-30T12:00:00Z')
    assert verdict['allowed'] is False
    assert verdict['next_allowed'] == ''


@pytest.mark.parametrize('schedule, forms', [
    ({'start': '21:00', 'period': '30min'},
     ('*-*-* *:00/30:00 Europe/Moscow', '0-59/30 * * * *', 'DTSTART;TZID=Europe/Moscow:20261130T210000 RRULE:FREQ=MINUTELY;INTERVAL=30')),
    ({'start': '21:15', 'period': '30 min'},
     ('*-*-* *:15/30:00 Europe/Moscow', '15-59/30 * * * *', 'DTSTART;TZID=Europe/Moscow:20261130T211500 RRULE:FREQ=MINUTELY;INTERVAL=30')),
    ({'start': '21:07', 'period': '1min'},
     ('*-*-* *:00/1:00 Europe/Moscow', '* * * * *', 'DTSTART;TZID=Europe/Moscow:20261130T210700 RRULE:FREQ=MINUTELY;INTERVAL=1')),
    ({'start': '21:10', 'period': 'hourly'},
     ('*-*-* 00/1:10:00 Europe/Moscow', '10 * * * *', 'DTSTART;TZID=Europe/Moscow:20261130T211000 RRULE:FREQ=HOURLY;INTERVAL=1')),
    ({'start': '21:10', 'period': '60min'},
     ('*-*-* 00/1:10:00 Europe/Moscow', '10 * * * *', 'DTSTART;TZID=Europe/Moscow:20261130T211000 RRULE:FREQ=HOURLY;INTERVAL=1')),
    ({'start': '21:00', 'period': '4h'},
     ('*-*-* 01/4:00:00 Europe/Moscow', '0 1-23/4 * * *', 'DTSTART;TZID=Europe/Moscow:20261130T210000 RRULE:FREQ=HOURLY;INTERVAL=4')),
    ({'start': '2026-12-05 22:00', 'period': 'daily'},
     ('*-*-* 22:00:00 Europe/Moscow', '0 22 * * *', 'DTSTART;TZID=Europe/Moscow:20261205T220000 RRULE:FREQ=DAILY;INTERVAL=1')),
    ({'start': '21:00', 'period': '24h'},
     ('*-*-* 21:00:00 Europe/Moscow', '0 21 * * *', 'DTSTART;TZID=Europe/Moscow:20261130T210000 RRULE:FREQ=DAILY;INTERVAL=1')),
    ({'start': '2026-12-06 03:30', 'period': 'weekly'},
     ('Sun *-*-* 03:30:00 Europe/Moscow', '30 3 * * 0', 'DTSTART;TZID=Europe/Moscow:20261206T033000 RRULE:FREQ=WEEKLY;INTERVAL=1')),
    ({'start': '2026-12-05 22:00', 'period': 'once'},
     ('2026-12-05 22:00:00 Europe/Moscow', '', 'DTSTART;TZID=Europe/Moscow:20261205T220000 RRULE:FREQ=MINUTELY;INTERVAL=1;COUNT=1')),
])
def test_schedule_forms(schedule, forms):
    got = schedule_forms(schedule, 'Europe/Moscow', now='2026-11-30T12:00:00+03:00')
    assert (got['on_calendar'], got['cron'], got['rrule']) == forms
    assert got['timezone'] == 'Europe/Moscow'


def test_schedule_date_is_the_sites_date():
    """23:30 UTC on the 30th is already 1 December in Moscow: DTSTART's date is the site's."""
    got = schedule_forms({'start': '21:00', 'period': '30min'}, 'Europe/Moscow', now='2026-11-30T23:30:00Z')
    assert got['rrule'].startswith('DTSTART;TZID=Europe/Moscow:20261201T210000 ')
    assert got['start'] == '2026-12-01 21:00'


@pytest.mark.parametrize('schedule, timezone, message', [
    ({'start': '21:00', 'period': '45min'}, 'UTC', '45min does not divide an hour'),
    ({'start': '21:00', 'period': '5h'}, 'UTC', '5h does not divide a day'),
    ({'start': '21:00', 'period': '0min'}, 'UTC', 'does not divide an hour'),
    ({'start': '21:00', 'period': 'fortnightly'}, 'UTC', "'fortnightly' is not one of <n>min, hourly"),
    ({'start': '21:00', 'period': 30}, 'UTC', "30 is not one of <n>min"),
    ({'start': 1260, 'period': '30min'}, 'UTC', 'write "21:00", quoted'),
    ({'start': '9pm', 'period': '30min'}, 'UTC', "start: '9pm' is not \"HH:MM\""),
    ({'start': '2026-02-30 21:00', 'period': 'daily'}, 'UTC', 'is not a date'),
    ({'start': '21:00', 'period': 'weekly'}, 'UTC', 'period weekly needs a start date'),
    ({'start': '21:00', 'period': 'once'}, 'UTC', 'period once needs a start date'),
    ({'start': '21:00'}, 'UTC', 'period is missing'),
    ({'start': '21:00', 'period': '30min', 'every': 2}, 'UTC', 'unknown key every'),
    ({'start': '21:00', 'period': '30min'}, '', 'no time zone'),
    ({'start': '21:00', 'period': '30min'}, 'Mars/Olympus', "unknown time zone 'Mars/Olympus'"),
    ('every 30 minutes', 'UTC', 'upgrade_schedule: a mapping of start, period'),
])
def test_bad_schedules_are_refused(schedule, timezone, message):
    with pytest.raises(WindowError) as caught:
        parse_schedule(schedule, timezone)
    assert message in str(caught.value)


def test_no_environment_leaks_into_the_module():
    """The module reads no environment variable: the TZ of the controller is not the site's."""
    source = open(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins', 'module_utils', 'window.py'),
                  encoding='utf-8').read()
    assert 'os.environ' not in source and 'getenv' not in source


def test_the_inventory_window_goes_over_the_profiles_key_by_key():
    profile = {'name': 'ksamu', 'window': {'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'days': 'even'}}
    assert window_spec(profile, {'timezone': 'Europe/Moscow', 'days': 'odd'}) == {
        'forbidden_hours': {'from': '06:00', 'to': '21:00'}, 'days': 'odd', 'timezone': 'Europe/Moscow'}
    # null removes the profile's key: no forbidden hours left, only odd days
    spec = window_spec(profile, {'timezone': 'Europe/Moscow', 'forbidden_hours': None, 'days': 'odd'})
    assert judge(spec, now=at('2026-12-01 12:00'))['allowed'] is True
    assert window_spec(None, None) == {} and window_spec({'window': None}, {}) == {}
    assert schedule_spec({'schedule': {'start': '21:00', 'period': 'hourly'}}, {'period': '30min'}) == {
        'start': '21:00', 'period': '30min'}
    with pytest.raises(WindowError, match='upgrade_window: a mapping'):
        window_spec(profile, ['06:00'])
