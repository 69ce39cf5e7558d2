#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: upgrade_journal
short_description: Keep a host's upgrade journal (JSON lines) and its upgrade lock, so that a rerun resumes
version_added: 0.1.0
description:
  - Appends the steps of an upgrade to a journal file on the host, one JSON object a line with C(step), C(started),
    C(ended), C(result), the C(target) version, the C(attempt) number and the C(run_id) of the playbook run.
  - An I(attempt) starts with the step C(begin) and ends with the step C(finish). A run that was interrupted leaves its
    attempt open; the next run resumes it (RV(attempt.open), RV(attempt.done)) instead of starting over.
  - Holds the host's upgrade lock - a file naming the run that holds it. Another run is refused, unless the holder is
    gone - its C(ansible-playbook) process (recorded when the controller is this machine) no longer exists since the
    same boot, or it has not written for O(stale_after) seconds. So the rerun of a crashed run takes the lock over.
  - Used by the roles of this collection; the journal is the source of the report's timeline and downtime.
  - On a Windows host (no Python there) its action plugin does the same on the controller, through the engine's own
    journal code, reading and writing the files with M(ansible.windows.slurp), M(ansible.windows.win_file) and an
    atomic-write script run by M(ansible.windows.win_powershell); C(docs/WINDOWS.md) says how to mark a Windows host.
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads the journal and the lock and says what would be written; writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix, windows
options:
  path:
    description:
      - The journal file. Its folder is created (mode 0750) when missing.
    type: path
    required: true
  op:
    description:
      - V(read) returns the journal and the state of the last attempt for O(target).
      - V(record) appends one entry for O(step). With O(result=started) it marks the step as started; any other
        result closes the step, with C(started) taken from its start entry.
      - V(probe) says whether this run could take the lock, without taking it.
      - V(lock) takes the lock (or keeps it, when this run holds it); V(unlock) releases it when this run holds it.
      - V(begin) takes the lock and records the step C(begin) (opening an attempt, or resuming the open one), in one call.
      - V(finish) records the step C(finish) with O(result) (the outcome of the attempt) and releases the lock.
    type: str
    default: read
    choices: [read, record, probe, lock, unlock, begin, finish]
  target:
    description:
      - The version this upgrade brings the host to. Attempts belong to one target version.
    type: str
  step:
    description:
      - Name of the step to record (for example C(begin), C(stage), C(stop), C(backup), C(swap), C(verify), C(finish)).
    type: str
  result:
    description:
      - Result of the step. C(finish) takes the outcome of the whole attempt (V(upgraded), V(rolled_back), V(failed)).
    type: str
    default: ok
    choices: [started, ok, failed, skipped, upgraded, rolled_back, current]
  data:
    description:
      - Extra facts to keep with the entry (for example the folder the old installation was moved to).
    type: dict
    default: {}
  note:
    description:
      - A sentence saying what happened (kept in the entry as C(message), shown in the report).
    type: str
  run_id:
    description:
      - Identifier of the playbook run, the owner of the lock.
    type: str
  lock_file:
    description:
      - The lock file. Default - C(upgrade.lock) beside O(path).
    type: path
  stale_after:
    description:
      - Seconds after the holder's last write when its lock counts as abandoned.
    type: int
    default: 3600
"""

EXAMPLES = r"""
- name: Read the journal
  clinops.upgrade.upgrade_journal:
    path: /var/lib/clinops/journal.jsonl
    target: 4.4.0
  register: journal

- name: Take the upgrade lock
  clinops.upgrade.upgrade_journal:
    path: /var/lib/clinops/journal.jsonl
    op: lock
    run_id: "{{ run_id }}"

- name: Record that the services are stopped
  clinops.upgrade.upgrade_journal:
    path: /var/lib/clinops/journal.jsonl
    op: record
    target: 4.4.0
    step: stop
    run_id: "{{ run_id }}"
"""

RETURN = r"""
entries:
  description: The entries of the journal (the last 1000).
  returned: always
  type: list
  elements: dict
attempt:
  description: The last attempt for O(target).
  returned: always
  type: dict
  contains:
    number: {description: Attempt number (0 when there was none), type: int}
    open: {description: Whether the attempt began and did not finish, type: bool}
    result: {description: Outcome of a finished attempt, type: str}
    done: {description: Steps of the attempt that ended with C(ok) or C(skipped), type: list, elements: str}
    started_steps: {description: Steps that started and did not end, type: list, elements: str}
    data: {description: The O(data) of the attempt's entries merged in order, type: dict}
    downtime_s: {description: Seconds from the start of the C(stop) step to the end of the C(verify) step, type: float}
    entries: {description: The attempt's entries, type: list, elements: dict}
lock:
  description: The lock as found (and as left by V(lock)/V(unlock)).
  returned: always
  type: dict
  contains:
    held: {description: Whether a lock file exists, type: bool}
    holder: {description: The content of the lock file, type: dict}
    available: {description: Whether this run holds it or may take it, type: bool}
    reason: {description: Why it is available or not, type: str}
entry:
  description: The entry written (or that would be written in check mode).
  returned: when O(op=record)
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils.journal import (
    append, attempt_state, judge_lock, make_entry, read_entries, read_lock, write_lock)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            op=dict(type='str', default='read', choices=['read', 'record', 'probe', 'lock', 'unlock', 'begin', 'finish']),
            target=dict(type='str'),
            step=dict(type='str'),
            result=dict(type='str', default='ok',
                        choices=['started', 'ok', 'failed', 'skipped', 'upgraded', 'rolled_back', 'current']),
            data=dict(type='dict', default={}),
            note=dict(type='str'),
            run_id=dict(type='str'),
            lock_file=dict(type='path'),
            stale_after=dict(type='int', default=3600),
        ),
        required_if=[('op', 'record', ('target', 'step', 'run_id')), ('op', 'lock', ('run_id',)),
                     ('op', 'begin', ('target', 'run_id')), ('op', 'finish', ('target', 'run_id')),
                     ('op', 'unlock', ('run_id',)), ('op', 'probe', ('run_id',))],
        supports_check_mode=True,
    )
    params = module.params
    path = params['path']
    lock_file = params['lock_file'] or os.path.join(os.path.dirname(path), 'upgrade.lock')
    folder = os.path.dirname(path)
    if os.path.exists(path) and not os.path.isfile(path):
        module.fail_json(msg='journal %s is not a regular file' % path)
    if params['stale_after'] < 0:
        module.fail_json(msg='stale_after must not be negative')
    try:
        entries = read_entries(path)
    except OSError as exc:
        module.fail_json(msg='cannot read the journal %s: %s' % (path, exc))
    attempt = attempt_state(entries, params['target'])
    exists = os.path.exists(lock_file)
    holder = read_lock(lock_file) if exists else {}
    available, reason = judge_lock(holder, exists, params['run_id'], params['stale_after'])
    result = dict(changed=False, entries=entries[-1000:], attempt=attempt,
                  lock=dict(held=exists, holder=holder, available=available, reason=reason))
    op = params['op']

    def ensure_folder():
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o750)

    def take_lock():
        if not available:
            module.fail_json(msg='another upgrade is running on this host: %s (lock file %s)' % (reason, lock_file), **result)
        if holder.get('run_id') != params['run_id'] or not exists:
            result['changed'] = True
            if not module.check_mode:
                ensure_folder()
                result['lock'].update(held=True, holder=write_lock(lock_file, params['run_id']), reason=reason)

    def release_lock():
        if os.path.exists(lock_file) and read_lock(lock_file).get('run_id') == params['run_id']:
            result['changed'] = True
            if not module.check_mode:
                os.unlink(lock_file)
                result['lock'].update(held=False, holder={})

    def record(step, res):
        if step != 'begin' and not attempt['open']:
            module.fail_json(msg='no open upgrade attempt to %s in %s: record the step begin first' % (params['target'], path), **result)
        entry = make_entry(attempt, step, res, params['target'], params['run_id'], params['data'], params['note'])
        result['entry'] = entry
        result['changed'] = True
        if not module.check_mode:
            try:
                ensure_folder()
                append(path, entry)
                if os.path.exists(lock_file) and read_lock(lock_file).get('run_id') == params['run_id']:
                    write_lock(lock_file, params['run_id'])
            except OSError as exc:
                module.fail_json(msg='cannot write the journal %s: %s' % (path, exc))
            entries.append(entry)
            result['entries'] = entries[-1000:]
            result['attempt'] = attempt_state(entries, params['target'])

    if op in ('lock', 'begin'):
        take_lock()
    if op == 'begin':
        record('begin', 'ok')
    elif op == 'record':
        record(params['step'], params['result'])
    elif op == 'finish':
        record('finish', params['result'])
    if op in ('unlock', 'finish'):
        release_lock()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
