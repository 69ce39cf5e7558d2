# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""When an upgrade may run (the window) and when the scheduled task starts it (the schedule).

The window is one mapping (docs/SCHEDULE.md), judged in the site's time zone whatever the controller's::

    >>> from datetime import datetime, timezone
    >>> spec = {'timezone': 'Europe/Moscow', 'forbidden_hours': {'from': '06:00', 'to': '21:00'}}
    >>> verdict = judge(spec, now=datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc))   # 06:00 in Moscow
    >>> verdict['allowed'], verdict['next_allowed']
    (False, '2026-11-30T21:00:00+03:00')

Keys: ``timezone`` (IANA), ``start_date`` (``YYYY-MM-DD``), ``from``/``to`` (allowed local times, ``to`` exclusive,
may wrap midnight; the part after midnight belongs to the day the window opened), ``forbidden_hours``
(``{from, to}``, may wrap midnight), ``days`` (``all``, ``even``, ``odd`` day of the month), ``weekdays`` and
``forbidden_weekdays`` (English names or ISO numbers, Monday=1). Hours are the site's wall-clock hours: on the days
daylight saving time begins or ends, the next allowed moment is the first real instant whose wall-clock time allows it.

The schedule (``start``, ``period``) gives the systemd ``OnCalendar=`` value, the cron time fields and the AWX
``rrule`` of the same starts.

Pure Python (standard library ``zoneinfo``), no Ansible: the filter and test plugins and the unit tests use it.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9: the plugins say so when used
    ZoneInfo = None
    ZoneInfoNotFoundError = KeyError

__all__ = ['WindowError', 'Window', 'window_spec', 'schedule_spec', 'parse_window', 'judge', 'parse_now', 'Schedule', 'parse_schedule', 'schedule_forms']

WINDOW_KEYS = ('timezone', 'start_date', 'from', 'to', 'forbidden_hours', 'days', 'weekdays', 'forbidden_weekdays')
SCHEDULE_KEYS = ('start', 'period')
DAY_NAMES = ('Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday')
_WEEKDAYS = {}
for _number, _name in enumerate(DAY_NAMES, 1):
    _WEEKDAYS[_name.lower()] = _number
    _WEEKDAYS[_name.lower()[:3]] = _number
_HM_RE = re.compile(r'^([01][0-9]|2[0-3]):([0-5][0-9])$')
_DATE_RE = re.compile(r'^([0-9]{4})-([0-9]{2})-([0-9]{2})$')
_START_RE = re.compile(r'^(?:([0-9]{4}-[0-9]{2}-[0-9]{2}) )?(([01][0-9]|2[0-3]):[0-5][0-9])$')
_PERIOD_RE = re.compile(r'^([0-9]+) ?(min|h)$')
# How far ahead the next allowed moment is looked for when the window has no start date (a combination of even/odd
# days and weekdays repeats well within it).
HORIZON_DAYS = 400


class WindowError(ValueError):
    """A window or schedule that cannot be judged; the message names the key and what is wrong."""


def _zone(name, where):
    if ZoneInfo is None:  # pragma: no cover
        raise WindowError('%s: time zones need Python 3.9 or later (zoneinfo) on the controller' % where)
    if not isinstance(name, str) or not name.strip():
        raise WindowError('%s: a time zone is an IANA name such as Europe/Berlin, not %r' % (where, name))
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise WindowError('%s: unknown time zone %r (an IANA name such as Europe/Berlin or Europe/Moscow)' % (where, name)) from None


def _hm(value, where):
    if isinstance(value, bool) or value is None:
        raise WindowError('%s: %r is not a time; write "HH:MM", quoted' % (where, value))
    if isinstance(value, int):
        raise WindowError('%s: %d is not a time: YAML reads an unquoted 21:00 as the number 1260; write "%02d:%02d", quoted'
                          % (where, value, value // 60 % 24, value % 60) if 0 <= value < 1440 else
                          '%s: %d is not a time; write "HH:MM", quoted' % (where, value))
    match = _HM_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise WindowError('%s: %r is not a time of day "HH:MM" (00:00 to 23:59)' % (where, value))
    return time(int(match.group(1)), int(match.group(2)))


def _date(value, where):
    if isinstance(value, datetime):
        raise WindowError('%s: %r is a moment, not a date "YYYY-MM-DD"' % (where, value))
    if isinstance(value, date):
        return value
    match = _DATE_RE.match(value.strip()) if isinstance(value, str) else None
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            pass
    raise WindowError('%s: %r is not a date "YYYY-MM-DD"' % (where, value))


def _weekday(value, where):
    if isinstance(value, bool):
        raise WindowError('%s: %r is not a weekday' % (where, value))
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if 1 <= value <= 7:
            return value
        if value == 0:
            raise WindowError('%s: 0 is not a weekday: ISO numbers run from Monday=1 to Sunday=7 (or write sunday)' % where)
        raise WindowError('%s: %d is not a weekday: ISO numbers run from Monday=1 to Sunday=7' % (where, value))
    if isinstance(value, str) and value.strip().lower() in _WEEKDAYS:
        return _WEEKDAYS[value.strip().lower()]
    raise WindowError('%s: %r is not a weekday (monday ... sunday, mon ... sun, or 1 ... 7 with Monday=1)' % (where, value))


def _weekdays(value, where):
    if isinstance(value, str) and ',' in value:
        value = [item for item in value.split(',') if item.strip()]
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise WindowError('%s: a list of weekdays (names or Monday=1 ... Sunday=7), not %r' % (where, value))
    return frozenset(_weekday(item, '%s[%d]' % (where, index)) for index, item in enumerate(value))


def _hours(spec, where):
    """``(from, to)`` of a mapping with both."""
    if not isinstance(spec, dict):
        raise WindowError('%s: a mapping {from: "HH:MM", to: "HH:MM"}, not %r' % (where, spec))
    unknown = sorted(str(key) for key in spec if key not in ('from', 'to'))
    if unknown:
        raise WindowError('%s: unknown key %s (known: from, to)' % (where, ', '.join(unknown)))
    missing = [key for key in ('from', 'to') if spec.get(key) is None]
    if missing:
        raise WindowError('%s: %s missing (both from and to are needed)' % (where, ' and '.join(missing)))
    start, end = _hm(spec['from'], where + '.from'), _hm(spec['to'], where + '.to')
    if start == end:
        raise WindowError('%s: from and to are both %s, which leaves no time; remove the key for "any time"'
                          % (where, start.strftime('%H:%M')))
    return start, end


def _inside(wall, start, end):
    """Whether the wall-clock time is in [start, end), wrapping midnight when end < start."""
    if start < end:
        return start <= wall < end
    return wall >= start or wall < end


def _span(start, end):
    return '%s-%s' % (start.strftime('%H:%M'), end.strftime('%H:%M'))


def _day_words(days):
    return ', '.join(DAY_NAMES[number - 1] for number in sorted(days))


class Window:
    """A checked window; ``allowed_at`` judges one instant."""

    def __init__(self, tz=None, tz_name='', start_date=None, hours=None, forbidden=None, days='all',
                 weekdays=None, forbidden_weekdays=None):
        self.tz = tz
        self.tz_name = tz_name
        self.start_date = start_date
        self.hours = hours
        self.forbidden = forbidden
        self.days = days
        self.weekdays = weekdays
        self.forbidden_weekdays = forbidden_weekdays

    @property
    def empty(self):
        return self.tz is None

    def describe(self):
        """The conditions in words: ``forbidden hours 06:00-21:00, never on Sunday (Europe/Moscow)``."""
        if self.empty:
            return 'any time'
        parts = []
        if self.start_date:
            parts.append('on %s' % self.start_date.isoformat())
        if self.hours:
            parts.append('from %s to %s' % (self.hours[0].strftime('%H:%M'), self.hours[1].strftime('%H:%M')))
        if self.forbidden:
            parts.append('forbidden hours %s' % _span(*self.forbidden))
        if self.days != 'all':
            parts.append('%s days of the month' % self.days)
        if self.weekdays:
            parts.append('only on %s' % _day_words(self.weekdays))
        if self.forbidden_weekdays:
            parts.append('never on %s' % _day_words(self.forbidden_weekdays))
        return '%s (%s)' % (', '.join(parts) or 'any time', self.tz_name)

    def problems_at(self, moment):
        """Why the instant is outside the window: a list of reasons, empty when it is allowed."""
        if self.empty:
            return []
        local = moment.astimezone(self.tz)
        wall = local.time().replace(tzinfo=None)
        day = local.date()
        problems = []
        if self.hours:
            start, end = self.hours
            if not _inside(wall, start, end):
                problems.append('outside the window %s %s' % (_span(start, end), self.tz_name))
            elif end < start and wall < end:
                day = day - timedelta(days=1)   # after midnight in a window that opened the day before
        if self.forbidden and _inside(wall, *self.forbidden):
            problems.append('forbidden hours %s %s' % (_span(*self.forbidden), self.tz_name))
        if self.start_date and day != self.start_date:
            problems.append('only on the start date %s (%s %s)' % (
                self.start_date.isoformat(), 'the window that opened' if day != local.date() else 'today is', day.isoformat()))
        if self.days != 'all' and (day.day % 2 == 0) != (self.days == 'even'):
            problems.append('only on %s days of the month (%s is %s)' % (
                self.days, day.strftime('%d %b').lstrip('0'), 'odd' if self.days == 'even' else 'even'))
        if self.weekdays and day.isoweekday() not in self.weekdays:
            problems.append('only on %s (%s is a %s)' % (_day_words(self.weekdays), day.isoformat(), DAY_NAMES[day.isoweekday() - 1]))
        if self.forbidden_weekdays and day.isoweekday() in self.forbidden_weekdays:
            problems.append('forbidden weekday %s' % DAY_NAMES[day.isoweekday() - 1])
        return problems

    def _candidates(self, day):
        """The instants of a local day at which being allowed may begin: midnight, the window's opening, the end of the
        forbidden hours (each occurrence of a repeated wall-clock time), and the day's clock changes."""
        walls = [time(0, 0)]
        if self.hours:
            walls.append(self.hours[0])
        if self.forbidden:
            walls.append(self.forbidden[1])
        found = set()
        for wall in walls:
            for fold in (0, 1):
                naive = datetime.combine(day, wall).replace(fold=fold)
                aware = naive.replace(tzinfo=self.tz)
                if aware.astimezone(dt_timezone.utc).astimezone(self.tz).replace(tzinfo=None, fold=0) == naive.replace(fold=0):
                    found.add(aware.astimezone(dt_timezone.utc))
                # a wall time that does not exist (clocks go forward): the change below is the first instant after it
        found.update(_clock_changes(self.tz, day))
        return sorted(found)

    def next_allowed(self, moment):
        """The first instant at or after ``moment`` inside the window, or None when there is none."""
        if not self.problems_at(moment):
            return moment
        first = moment.astimezone(self.tz).date() - timedelta(days=1)
        last = self.start_date + timedelta(days=1) if self.start_date else first + timedelta(days=HORIZON_DAYS)
        day = first
        while day <= last:
            for candidate in self._candidates(day):
                if candidate > moment and not self.problems_at(candidate):
                    return candidate
            day += timedelta(days=1)
        return None


def _clock_changes(tz, day):
    """The UTC instants on a local day at which the zone's offset changes (found to the second)."""
    start = datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(dt_timezone.utc) - timedelta(hours=3)
    end = start + timedelta(hours=30)
    changes = []
    step = timedelta(hours=1)
    low = start
    while low < end:
        high = low + step
        if low.astimezone(tz).utcoffset() != high.astimezone(tz).utcoffset():
            a, b = low, high
            while b - a > timedelta(seconds=1):
                middle = a + (b - a) / 2
                if a.astimezone(tz).utcoffset() == middle.astimezone(tz).utcoffset():
                    a = middle
                else:
                    b = middle
            if b.astimezone(tz).date() == day:
                changes.append(b.replace(microsecond=0))
        low = high
    return changes


def _combine(spec, where):
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise WindowError('%s: a mapping of %s, not %r' % (where, ', '.join(WINDOW_KEYS if where.endswith('window') else SCHEDULE_KEYS), spec))
    return dict((key, value) for key, value in spec.items() if value is not None and value != '')


def _over(base, override, where):
    merged = dict(base) if isinstance(base, dict) else {}
    if override is not None and not isinstance(override, dict):
        raise WindowError('%s: a mapping, not %r' % (where, override))
    merged.update(override or {})
    return merged


def window_spec(profile, override=None):
    """The profile's ``window`` with the inventory's ``upgrade_window`` over it key by key (null removes a key)."""
    return _over((profile or {}).get('window'), override, 'upgrade_window')


def schedule_spec(profile, override=None):
    """The profile's ``schedule`` with the inventory's ``upgrade_schedule`` over it key by key (null removes a key)."""
    return _over((profile or {}).get('schedule'), override, 'upgrade_schedule')


def parse_window(spec, timezone=None, where='upgrade_window'):
    """Check a window mapping and return a :class:`Window`. ``timezone`` is used when the spec names none."""
    spec = _combine(spec, where)
    unknown = sorted(str(key) for key in spec if key not in WINDOW_KEYS)
    if unknown:
        raise WindowError('%s: unknown key%s %s (known: %s)' % (where, 's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(WINDOW_KEYS)))
    conditions = [key for key in spec if key != 'timezone' and not (key == 'days' and spec[key] == 'all')]
    tz_name = spec.get('timezone') or timezone or ''
    if tz_name:
        tz = _zone(tz_name, where + '.timezone')
    elif conditions:
        raise WindowError('%s: no time zone: set upgrade_timezone (the site\'s IANA zone, e.g. Europe/Berlin) or %s.timezone; '
                          'the controller\'s clock is not the site\'s' % (where, where))
    else:
        tz = None
    if spec.get('days', 'all') not in ('all', 'even', 'odd'):
        raise WindowError('%s.days: %r is not one of all, even, odd (days of the month)' % (where, spec['days']))
    if ('from' in spec) != ('to' in spec):
        raise WindowError('%s: %s without %s; give both (allowed from ... to ...)' % (
            where, 'from' if 'from' in spec else 'to', 'to' if 'from' in spec else 'from'))
    window = Window(
        tz=tz if (conditions or tz_name) else None,
        tz_name=tz_name.strip() if isinstance(tz_name, str) else '',
        start_date=_date(spec['start_date'], where + '.start_date') if 'start_date' in spec else None,
        hours=_hours({'from': spec['from'], 'to': spec['to']}, where) if 'from' in spec else None,
        forbidden=_hours(spec['forbidden_hours'], where + '.forbidden_hours') if 'forbidden_hours' in spec else None,
        days=spec.get('days', 'all'),
        weekdays=_weekdays(spec['weekdays'], where + '.weekdays') if 'weekdays' in spec else None,
        forbidden_weekdays=_weekdays(spec['forbidden_weekdays'], where + '.forbidden_weekdays') if 'forbidden_weekdays' in spec else None,
    )
    if window.weekdays is not None and window.forbidden_weekdays is not None and not window.weekdays - window.forbidden_weekdays:
        raise WindowError('%s: every weekday of weekdays is also in forbidden_weekdays, which leaves no day' % where)
    if window.forbidden_weekdays is not None and len(window.forbidden_weekdays) == 7:
        raise WindowError('%s.forbidden_weekdays: all seven days are forbidden, which leaves no day' % where)
    return window


def parse_now(now=None):
    """The moment to judge: None (the real clock), an aware datetime, or an ISO 8601 text with its offset."""
    if now is None or now == '':
        return datetime.now(dt_timezone.utc)
    if isinstance(now, str):
        try:
            now = datetime.fromisoformat(now.strip().replace('Z', '+00:00'))
        except ValueError:
            raise WindowError('now: %r is not an ISO 8601 moment such as 2026-11-30T05:59:00+03:00' % now) from None
    if not isinstance(now, datetime):
        raise WindowError('now: %r is not a moment (an ISO 8601 text with its offset)' % (now,))
    if now.tzinfo is None or now.utcoffset() is None:
        raise WindowError('now: %s has no offset; give it as 2026-11-30T05:59:00+03:00 (or ...Z for UTC)' % now.isoformat())
    return now


def _local_words(moment, tz):
    local = moment.astimezone(tz)
    return '%s %s' % (local.strftime('%Y-%m-%d %H:%M'), local.tzname())


def judge(spec, now=None, timezone=None, run_now=False):
    """The verdict on a window at ``now``: a dict with ``allowed`` (bool), ``reason`` (words), ``next_allowed`` (ISO
    8601 with the site's offset; the moment itself when allowed, empty when never again), ``next_allowed_local``
    (``2026-11-30 21:00 MSK``), ``now`` (ISO, site time), ``timezone``, ``window`` (the conditions in words)."""
    window = parse_window(spec, timezone)
    moment = parse_now(now)
    tz = window.tz or moment.tzinfo
    result = {'allowed': True, 'now': moment.astimezone(tz).isoformat(), 'timezone': window.tz_name,
              'window': window.describe(), 'run_now': bool(run_now)}
    if window.empty:
        result.update(reason='no window configured: any time', next_allowed=result['now'],
                      next_allowed_local=_local_words(moment, tz))
        return result
    if run_now:
        result.update(reason='started by hand (upgrade_run_now): the window %s is not applied' % window.describe(),
                      next_allowed=result['now'], next_allowed_local=_local_words(moment, tz))
        return result
    problems = window.problems_at(moment)
    if not problems:
        result.update(reason='allowed now (%s): window %s' % (_local_words(moment, tz), window.describe()),
                      next_allowed=result['now'], next_allowed_local=_local_words(moment, tz))
        return result
    following = window.next_allowed(moment)
    if following is None:
        when = 'never again (%s)' % ('the start date %s has passed' % window.start_date.isoformat() if window.start_date
                                     else 'no allowed moment within %d days' % HORIZON_DAYS)
        result.update(next_allowed='', next_allowed_local='')
    else:
        local = following.astimezone(tz)
        when = 'next allowed %s (%s)' % (_local_words(following, tz), local.isoformat())
        result.update(next_allowed=local.isoformat(), next_allowed_local=_local_words(following, tz))
    result.update(allowed=False, reason='not now (%s): %s; %s' % (_local_words(moment, tz), '; '.join(problems), when))
    return result


class Schedule:
    """A checked schedule: ``start_date`` (or None), ``start`` (time), ``unit`` (min, h, day, week, once), ``every``."""

    def __init__(self, tz, tz_name, start_date, start, unit, every):
        self.tz, self.tz_name, self.start_date, self.start, self.unit, self.every = tz, tz_name, start_date, start, unit, every


def parse_schedule(spec, timezone=None, where='upgrade_schedule'):
    """Check a schedule mapping (``start``, ``period``) and return a :class:`Schedule`."""
    spec = _combine(spec, where)
    unknown = sorted(str(key) for key in spec if key not in SCHEDULE_KEYS)
    if unknown:
        raise WindowError('%s: unknown key%s %s (known: %s)' % (where, 's' if len(unknown) > 1 else '', ', '.join(unknown), ', '.join(SCHEDULE_KEYS)))
    for key in SCHEDULE_KEYS:
        if key not in spec:
            raise WindowError('%s: %s is missing' % (where, key))
    if not timezone:
        raise WindowError('%s: no time zone: set upgrade_timezone (the site\'s IANA zone) or upgrade_window.timezone' % where)
    tz = _zone(timezone, where + ' time zone')
    start = spec['start']
    if isinstance(start, int) and not isinstance(start, bool):
        _hm(start, where + '.start')
    match = _START_RE.match(start.strip()) if isinstance(start, str) else None
    if not match:
        raise WindowError('%s.start: %r is not "HH:MM" or "YYYY-MM-DD HH:MM" (site time, quoted)' % (where, start))
    start_date = _date(match.group(1), where + '.start') if match.group(1) else None
    start_time = _hm(match.group(2), where + '.start')
    period = spec['period']
    text = period.strip().lower() if isinstance(period, str) else ''
    named = {'hourly': ('h', 1), 'daily': ('day', 1), 'weekly': ('week', 1), 'once': ('once', 1)}
    if text in named:
        unit, every = named[text]
    else:
        match = _PERIOD_RE.match(text)
        if not match:
            raise WindowError('%s.period: %r is not one of <n>min, hourly, <n>h, daily, weekly, once' % (where, period))
        every, unit = int(match.group(1)), match.group(2)
        if unit == 'min' and (every == 0 or 60 % every):
            raise WindowError('%s.period: %s does not divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60 min)' % (where, period))
        if unit == 'h' and (every == 0 or 24 % every):
            raise WindowError('%s.period: %s does not divide a day (1, 2, 3, 4, 6, 8, 12 or 24 h)' % (where, period))
        if unit == 'min' and every == 60:
            unit, every = 'h', 1
        if unit == 'h' and every == 24:
            unit, every = 'day', 1
    if unit in ('week', 'once') and start_date is None:
        raise WindowError('%s.start: period %s needs a start date ("YYYY-MM-DD HH:MM")' % (where, text))
    return Schedule(tz, timezone.strip(), start_date, start_time, unit, every)


def schedule_forms(spec, timezone=None, now=None, where='upgrade_schedule'):
    """The schedule's starts as systemd ``on_calendar``, cron ``cron`` (the five time fields; empty for ``once``) and
    AWX ``rrule`` (DTSTART in the site's zone; its date is the start date, or ``now``'s local date)."""
    schedule = parse_schedule(spec, timezone, where)
    hour, minute = schedule.start.hour, schedule.start.minute
    zone = schedule.tz_name
    if schedule.unit == 'min':
        first = minute % schedule.every
        on_calendar = '*-*-* *:%02d/%d:00 %s' % (first, schedule.every, zone)
        cron = '* * * * *' if schedule.every == 1 else '%d-59/%d * * * *' % (first, schedule.every)
        rule = 'FREQ=MINUTELY;INTERVAL=%d' % schedule.every
    elif schedule.unit == 'h':
        first = hour % schedule.every
        on_calendar = '*-*-* %02d/%d:%02d:00 %s' % (first, schedule.every, minute, zone)
        cron = '%d * * * *' % minute if schedule.every == 1 else '%d %d-23/%d * * *' % (minute, first, schedule.every)
        rule = 'FREQ=HOURLY;INTERVAL=%d' % schedule.every
    elif schedule.unit == 'day':
        on_calendar = '*-*-* %02d:%02d:00 %s' % (hour, minute, zone)
        cron = '%d %d * * *' % (minute, hour)
        rule = 'FREQ=DAILY;INTERVAL=1'
    elif schedule.unit == 'week':
        weekday = schedule.start_date.isoweekday()
        on_calendar = '%s *-*-* %02d:%02d:00 %s' % (DAY_NAMES[weekday - 1][:3], hour, minute, zone)
        cron = '%d %d * * %d' % (minute, hour, weekday % 7)
        rule = 'FREQ=WEEKLY;INTERVAL=1'
    else:
        on_calendar = '%s %02d:%02d:00 %s' % (schedule.start_date.isoformat(), hour, minute, zone)
        cron = ''
        rule = 'FREQ=MINUTELY;INTERVAL=1;COUNT=1'
    first_date = schedule.start_date or parse_now(now).astimezone(schedule.tz).date()
    rrule = 'DTSTART;TZID=%s:%s RRULE:%s' % (zone, datetime.combine(first_date, schedule.start).strftime('%Y%m%dT%H%M%S'), rule)
    period = {'min': '%dmin', 'h': '%dh', 'day': 'daily', 'week': 'weekly', 'once': 'once'}[schedule.unit]
    return {'on_calendar': on_calendar, 'cron': cron, 'rrule': rrule, 'timezone': zone,
            'start': '%s%s' % (first_date.isoformat() + ' ', schedule.start.strftime('%H:%M')),
            'period': period % schedule.every if '%' in period else period}
