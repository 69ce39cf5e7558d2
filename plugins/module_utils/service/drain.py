# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drain of service_stop_ordered: wait until a query or command counts no more active work (or the drain times out)."""

from __future__ import annotations

import shlex
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils import mssql as _mssql
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DatabaseError, connect, describe_error
from ansible_collections.clinops.upgrade.plugins.module_utils.service.spec import drain_message, parse_count


def drain_count(module, drain):
    if drain['command']:
        rc, out, err = module.run_command(shlex.split(drain['command']))
        if rc != 0:
            module.fail_json(msg='drain.command %s exited with %s before anything was stopped: %s' % (
                drain['command'], rc, (err or out).strip()[-500:]))
        count = parse_count(out)
        if count is None:
            module.fail_json(msg='drain.command %s printed no number before anything was stopped: %r' % (drain['command'], out[-200:]))
        return count
    if drain['connection']['engine'] == 'mssql':
        return mssql_count(module, drain)
    conn = None
    row = None
    try:
        conn = connect(drain['connection'], autocommit=True)
        cur = conn.cursor()
        cur.execute(drain['query'])
        row = cur.fetchone()
        cur.close()
    except DatabaseError as exc:
        module.fail_json(msg='drain.query: %s; nothing was stopped' % to_native(exc))
    except Exception as exc:  # pylint: disable=broad-except  # drivers raise their own hierarchies
        module.fail_json(msg='drain.query failed before anything was stopped: %s' % describe_error(exc))
    finally:
        if conn is not None:
            conn.close()
    try:
        return int(row[0])
    except (TypeError, ValueError, IndexError):
        module.fail_json(msg='drain.query returned %r, not a count; nothing was stopped' % (row,))


def mssql_count(module, drain):
    """``drain.query`` on SQL Server through ``sqlcmd`` (``SET NOCOUNT ON; USE [database];`` before it)."""
    sqlcmd = module.get_bin_path('sqlcmd', required=True)
    connection = drain['connection']
    try:
        statement = _mssql.scalar_statement(drain['query'], connection.get('database'))
        value = _mssql.first_value(_mssql.run(sqlcmd, connection, statement, timeout=max(drain['interval'], 30)))
    except _mssql.MssqlError as exc:
        module.fail_json(msg='drain.query failed before anything was stopped: %s' % exc)
    try:
        return int(value)
    except (TypeError, ValueError):
        module.fail_json(msg='drain.query returned %r, not a count; nothing was stopped' % (value,))


def run_drain(module, drain, result):
    info = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False)
    result['drain'] = info
    started = time.monotonic()
    deadline = started + drain['max_wait']
    info['count'] = drain_count(module, drain)
    info['polls'] = 1
    if info['count'] > 0 and drain['broadcast']:
        text = drain_message(drain['broadcast'], deadline - time.monotonic(), info['count'])
        wall = module.get_bin_path('wall', required=True)
        rc, out, err = module.run_command([wall, text])
        if rc != 0:
            module.warn('wall exited with %s: %s' % (rc, (err or out).strip()))
        info['message_sent'] = True
    while info['count'] > 0 and time.monotonic() < deadline:
        time.sleep(min(drain['interval'], max(deadline - time.monotonic(), 0.01)))
        info['count'] = drain_count(module, drain)
        info['polls'] += 1
    info['waited'] = round(time.monotonic() - started, 3)
    if info['count'] > 0:
        info['timed_out'] = True
        if drain['on_timeout'] == 'fail':
            module.fail_json(msg='drain: the count is still %s after %s s (max_wait); nothing was stopped' % (
                info['count'], drain['max_wait']), **result)
        module.warn('drain: the count is still %s after %s s; stopping anyway (on_timeout=proceed)' % (
            info['count'], drain['max_wait']))
