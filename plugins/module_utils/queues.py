# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before anything stops: the product's queues drained (step ``queues`` of the engine), and how many sessions the web
interface has open (counted just before the stop).

The queues are the profile's: each a name and a query that counts its entries (``queues.wait``: must reach 0 before the
stop; ``queues.advice``: reported, not waited for).  The step polls every ``interval`` seconds until every ``wait``
count is 0, journaling the counts each time they change; when ``max_wait`` passes first it fails with the counts left,
and nothing has been stopped.
"""

from __future__ import annotations

import json
import time

from ansible.module_utils.urls import open_url
from ansible_collections.clinops.upgrade.plugins.module_utils import dbcheck as _dbcheck
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed


def problems(queues, web_sessions):
    """Input errors of the ``queues`` and ``web_sessions`` options (before anything is touched)."""
    errors = []
    if queues:
        if not isinstance(queues.get('connection'), dict) or not queues['connection'].get('engine'):
            errors.append('queues needs connection (the database options, with engine)')
        for kind in ('wait', 'advice'):
            entries = queues.get(kind) or []
            if not isinstance(entries, list):
                errors.append('queues.%s must be a list of {name, query}' % kind)
                continue
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict) or not entry.get('name') or not entry.get('query'):
                    errors.append('queues.%s[%d] needs name and query' % (kind, index))
        for key in ('max_wait', 'interval'):
            value = queues.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                errors.append('queues.%s must be a number of seconds, 0 or more (got %r)' % (key, value))
    if web_sessions:
        url = str(web_sessions.get('url') or '')
        if not url.startswith(('http://', 'https://')):
            errors.append('web_sessions.url must be an http:// or https:// URL, not %r' % url)
    return errors


def counts(connection, entries):
    return dict((entry['name'], _dbcheck.count(connection, entry['query'])) for entry in entries)


def words(found):
    return ', '.join('%s %d' % (name, n) for name, n in found.items())


def drain(engine):
    """The step ``queues``: wait until every ``wait`` queue is empty (journaling the counts as they fall)."""
    queues = engine.p.get('queues') or {}
    if not queues.get('wait') and not queues.get('advice'):
        return None
    connection, wait = queues['connection'], queues.get('wait') or []
    max_wait = float(queues['max_wait'] if queues.get('max_wait') is not None else 3600)
    interval = max(0.2, float(queues.get('interval') or 2))
    started = time.monotonic()
    seen, last = [], None
    while wait:
        try:
            now = counts(connection, wait)
        except _dbcheck.QueryFailed as exc:
            raise StepFailed('the queues could not be counted, nothing was stopped: %s' % exc) from exc
        if now != last:
            seen.append(dict(seconds=round(time.monotonic() - started, 1), counts=now))
            engine.journal.record('queues', 'progress', data={}, note='waiting for the queues: %s' % words(now))
            last = now
        if not any(now.values()):
            break
        if time.monotonic() - started >= max_wait:
            left = dict((k, v) for k, v in now.items() if v)
            raise StepFailed('the queues were not empty after %.0f s (max_wait): %s left; nothing was stopped, the product '
                             'keeps running' % (max_wait, words(left)), dict(queue_counts=now, queue_history=seen[-50:]))
        time.sleep(min(interval, max(0.0, max_wait - (time.monotonic() - started)) + 0.05))
    advice = {}
    if queues.get('advice'):
        try:
            advice = counts(connection, queues['advice'])
        except _dbcheck.QueryFailed as exc:
            engine.module.warn('advice: the queues could not be counted: %s' % exc)
        busy = dict((k, v) for k, v in advice.items() if v)
        if busy:
            engine.module.warn('advice (not required): %s still hold entries; an empty queue is best before an upgrade' % words(busy))
            engine.journal.record('queues', 'progress', data={}, note='advice: %s still hold entries (not required)' % words(busy))
    return dict(queues_waited_s=round(time.monotonic() - started, 1), queue_history=seen[-50:], queue_advice=advice)


def session_count(answer, key):
    """The number of sessions in a status answer: the JSON value at ``key`` (a dotted path), or the body as a number."""
    text = answer.strip()
    if key:
        value = json.loads(text)
        for part in key.split('.'):
            value = value[part]
        return int(value)
    return int(text)


def open_sessions(engine):
    """How many sessions the web interface has open (the profile's ``web_sessions``), or None when not asked or not
    answered (a warning says why; the stop goes on)."""
    spec = engine.p.get('web_sessions')
    if not spec or not spec.get('url'):
        return None
    try:
        answer = open_url(spec['url'], timeout=float(spec.get('timeout') or 5), validate_certs=spec.get('validate_certs', True))
        found = session_count(answer.read().decode('utf-8', 'replace'), spec.get('key'))
    except Exception as exc:  # pylint: disable=broad-except
        engine.module.warn('the web interface did not say how many sessions are open (%s): %s' % (spec['url'], exc))
        return None
    engine.journal.record('stop', 'progress', data={},
                          note='the web interface has %d session(s) open; the stop ends them' % found)
    return found
