# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host's upgrade journal (JSON lines) and upgrade lock, shared by upgrade_journal and upgrade_cutover."""

from __future__ import annotations

import datetime
import json
import os
import socket
import time


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')


def parse_iso(text):
    try:
        return datetime.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def read_entries(path):
    entries = []
    if not os.path.exists(path):
        return entries
    with open(path, encoding='utf-8') as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash: ignore it, the step counts as not done
    return entries


def attempt_state(entries, target):
    state = dict(number=0, open=False, result=None, done=[], started_steps=[], data={}, downtime_s=None, entries=[])
    mine = [e for e in entries if e.get('target') == target] if target else list(entries)
    if not mine:
        return state
    number = max(int(e.get('attempt') or 0) for e in mine)
    current = [e for e in mine if int(e.get('attempt') or 0) == number]
    state['number'] = number
    state['entries'] = current
    finished = [e for e in current if e.get('step') == 'finish']
    state['open'] = not finished
    state['result'] = finished[-1].get('result') if finished else None
    ended = {}
    for entry in current:
        state['data'].update(entry.get('data') or {})
        if entry.get('result') in ('ok', 'skipped'):
            ended[entry['step']] = entry
        elif entry.get('result') == 'failed':
            ended.pop(entry.get('step'), None)
    state['done'] = [s for s in ended if s not in ('begin', 'finish')]
    starts = [e['step'] for e in current if e.get('result') == 'started']
    state['started_steps'] = [s for s in dict.fromkeys(starts) if s not in ended]
    stop = [e for e in current if e.get('step') == 'stop' and e.get('started')]
    verify = [e for e in current if e.get('step') == 'verify' and e.get('ended') and e.get('result') == 'ok']
    if stop and verify:
        first, last = parse_iso(stop[0]['started']), parse_iso(verify[-1]['ended'])
        if first and last:
            state['downtime_s'] = round((last - first).total_seconds(), 3)
    # a product that locks its database for the update (upgrade_cutover's flow): the downtime is lock to unlock; a
    # minor update that neither stopped nor locked anything had none
    lock = [e for e in current if e.get('step') == 'lock' and e.get('result') == 'ok' and e.get('started')]
    unlock = [e for e in current if e.get('step') == 'unlock' and e.get('result') == 'ok' and e.get('ended')]
    if lock and unlock:
        first, last = parse_iso(lock[0]['started']), parse_iso(unlock[-1]['ended'])
        if first and last:
            state['downtime_s'] = round((last - first).total_seconds(), 3)
    elif verify and 'lock' in ended and not lock and not [e for e in stop if e.get('result') == 'ok']:
        state['downtime_s'] = 0.0
    return state


def boot_id():
    try:
        with open('/proc/sys/kernel/random/boot_id', encoding='ascii') as handle:
            return handle.read().strip()
    except OSError:
        return None


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
    except OSError:
        return ''


def parent(pid):
    try:
        with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def controller_pid():
    """The outermost ansible-playbook process above this module (only when the controller is this machine)."""
    found, pid = None, os.getppid()
    for dummy in range(64):
        if pid <= 1:
            break
        if 'ansible-playbook' in cmdline(pid):
            found = pid
        pid = parent(pid)
    return found


def alive(pid):
    return bool(pid) and 'ansible-playbook' in cmdline(int(pid))


def read_lock(lock_file):
    try:
        with open(lock_file, encoding='utf-8') as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {} if not os.path.exists(lock_file) else {'corrupt': True}


def judge_lock(holder, exists, run_id, stale_after):
    if not exists:
        return True, 'free'
    if holder.get('run_id') == run_id:
        return True, 'held by this run'
    if holder.get('corrupt'):
        return True, 'unreadable lock file, taken over'
    if holder.get('pid') and holder.get('boot_id') == boot_id() and holder.get('host') == socket.gethostname():
        if not alive(holder['pid']):
            return True, 'holder run %s (pid %s) is gone' % (holder.get('run_id'), holder['pid'])
        return False, 'held by run %s, ansible-playbook pid %s still running' % (holder.get('run_id'), holder['pid'])
    beat = holder.get('heartbeat_epoch') or 0
    age = time.time() - beat
    if age > stale_after:
        return True, 'holder run %s silent for %ds (stale after %ds)' % (holder.get('run_id'), age, stale_after)
    return False, 'held by run %s from %s, last write %ds ago' % (holder.get('run_id'), holder.get('host'), age)


def write_lock(lock_file, run_id):
    data = dict(run_id=run_id, pid=controller_pid(), boot_id=boot_id(), host=socket.gethostname(),
                acquired=now_iso(), heartbeat_epoch=time.time())
    tmp = '%s.%d.tmp' % (lock_file, os.getpid())
    with open(tmp, 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, lock_file)
    return data


def append(path, entry):
    line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + '\n'
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode('utf-8'))
        os.fsync(fd)
    finally:
        os.close(fd)


def make_entry(attempt, step, result, target, run_id, data=None, note=None, stamp=None):
    """The entry that records O(step) with O(result) in the open attempt (or opens a new one with step begin)."""
    number = attempt['number'] if (attempt['open'] or step != 'begin') else attempt['number'] + 1
    stamp = stamp or now_iso()
    entry = dict(step=step, result=result, target=target, attempt=number, run_id=run_id, data=data or {}, message=note)
    if result == 'started':
        entry['started'] = stamp
    else:
        starts = [e for e in attempt['entries'] if e.get('step') == step and e.get('result') == 'started'] if attempt['open'] else []
        entry['started'] = starts[-1]['started'] if starts else stamp
        entry['ended'] = stamp
    return entry


class Journal:
    """Append entries to one journal and keep the attempt's state current (the lock's heartbeat too)."""

    def __init__(self, path, target, run_id, lock_file=None):
        self.path = path
        self.target = target
        self.run_id = run_id
        self.lock_file = lock_file or os.path.join(os.path.dirname(path), 'upgrade.lock')
        self.entries = read_entries(path)
        self.attempt = attempt_state(self.entries, target)

    def record(self, step, result, data=None, note=None):
        entry = make_entry(self.attempt, step, result, self.target, self.run_id, data, note)
        append(self.path, entry)
        holder = read_lock(self.lock_file) if os.path.exists(self.lock_file) else {}
        if holder.get('run_id') == self.run_id:
            write_lock(self.lock_file, self.run_id)
        self.entries.append(entry)
        self.attempt = attempt_state(self.entries, self.target)
        return entry

    def read_holder(self):
        """Who holds the upgrade lock (read_lock's answer)."""
        return read_lock(self.lock_file)

    def release_lock(self):
        """Remove the upgrade lock when this run holds it (as upgrade_journal's op finish does)."""
        if os.path.exists(self.lock_file) and read_lock(self.lock_file).get('run_id') == self.run_id:
            os.unlink(self.lock_file)
            return True
        return False
