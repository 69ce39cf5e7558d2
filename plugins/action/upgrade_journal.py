# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of upgrade_journal: the module on a POSIX host; on a Windows host the journal and the lock are files
on the host, read and written from the controller (slurp, the engine's atomic write script, win_file) through the
same HostJournal the engine uses there, with the same entries (journal.make_entry) and the same lock rules
(journal.judge_lock: a lock of another run is taken over only when it has been silent for ``stale_after`` seconds)."""

from __future__ import annotations

import json
import socket
import time

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.clinops.upgrade.plugins.plugin_utils.dispatch import HostDispatchAction
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed
from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import HostJournal, WindowsHost

MODULE = 'clinops.upgrade.upgrade_journal'

SPEC = dict(
    path=dict(type='str', required=True),
    op=dict(type='str', default='read', choices=['read', 'record', 'probe', 'lock', 'unlock', 'begin', 'finish']),
    target=dict(type='str'),
    step=dict(type='str'),
    result=dict(type='str', default='ok', choices=['started', 'ok', 'failed', 'skipped', 'upgraded', 'rolled_back', 'current']),
    data=dict(type='dict', default={}),
    note=dict(type='str'),
    run_id=dict(type='str'),
    lock_file=dict(type='str'),
    stale_after=dict(type='int', default=3600),
)
REQUIRED_IF = [('op', 'record', ('target', 'step', 'run_id')), ('op', 'lock', ('run_id',)),
               ('op', 'begin', ('target', 'run_id')), ('op', 'finish', ('target', 'run_id')),
               ('op', 'unlock', ('run_id',)), ('op', 'probe', ('run_id',))]


def windows_journal(host, params, check_mode):
    """upgrade_journal's operations on a Windows host: the module's result, or dict(failed=True, msg=...)."""
    path = params['path'].replace('\\', '/')
    folder = path.rsplit('/', 1)[0]
    lock_file = (params['lock_file'] or folder + '/upgrade.lock').replace('\\', '/')
    if params['stale_after'] < 0:
        return dict(failed=True, msg='stale_after must not be negative')
    journal = HostJournal(host, path, params['target'], params['run_id'], lock_file=lock_file)
    holder = journal.read_holder()
    exists = holder != {}
    available, reason = _journal.judge_lock(holder, exists, params['run_id'], params['stale_after'])
    result = dict(changed=False, entries=journal.entries[-1000:], attempt=journal.attempt,
                  lock=dict(held=exists, holder=holder, available=available, reason=reason))
    op = params['op']
    if op in ('lock', 'begin'):
        if not available:
            return dict(result, failed=True, msg='another upgrade is running on this host: %s (lock file %s)' % (reason, lock_file))
        if holder.get('run_id') != params['run_id'] or not exists:
            result['changed'] = True
            if not check_mode:
                host.makedirs(folder)
                journal.holder = dict(run_id=params['run_id'], pid=_journal.controller_pid(), boot_id=None, host=socket.gethostname(),
                                      acquired=_journal.now_iso(), heartbeat_epoch=time.time())
                host.write_atomic(lock_file, json.dumps(journal.holder).encode('utf-8'))
                result['lock'].update(held=True, holder=journal.holder, reason=reason)
    step = {'begin': 'begin', 'finish': 'finish', 'record': params['step']}.get(op)
    if step:
        if step != 'begin' and not journal.attempt['open']:
            return dict(result, failed=True, msg='no open upgrade attempt to %s in %s: record the step begin first' % (params['target'], path))
        res = 'ok' if op == 'begin' else params['result']
        result['changed'] = True
        if check_mode:
            result['entry'] = _journal.make_entry(journal.attempt, step, res, params['target'], params['run_id'],
                                                  params['data'], params['note'])
        else:
            host.makedirs(folder)
            result['entry'] = journal.record(step, res, data=params['data'], note=params['note'])
            result['entries'], result['attempt'] = journal.entries[-1000:], journal.attempt
    if op in ('unlock', 'finish') and journal.read_holder().get('run_id') == params['run_id']:
        result['changed'] = True
        if not check_mode:
            journal.release_lock()
            result['lock'].update(held=False, holder={})
    return result


class ActionModule(HostDispatchAction):

    TRANSFERS_FILES = False
    MODULE = MODULE

    def run_windows(self, task_vars):
        checked = ArgumentSpecValidator(SPEC, required_if=REQUIRED_IF).validate(dict(self._task.args))
        if checked.error_messages:
            return dict(failed=True, msg='invalid input: ' + '; '.join(checked.error_messages))
        try:
            return windows_journal(WindowsHost(self, task_vars), checked.validated_parameters, bool(self._task.check_mode))
        except StepFailed as exc:
            return dict(failed=True, msg=exc.msg)
