# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of service_stop_ordered: the POSIX module, or the same order through ansible.windows.

Python modules do not run on Windows.  Like ansible-core's ``service`` action plugin dispatches on the service
manager, this one looks at the host: on Windows (``plugin_utils/host_os.py``, or ``backend: windows``) it stops each
service with ``sc.exe stop`` (``ansible.windows.win_command``), polls ``ansible.windows.win_service_info`` until the
service is stopped or its timeout passes, waits for its port with ``ansible.windows.win_wait_for``, and starts with
``ansible.windows.win_service``.  Anywhere else it runs the module.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import is_windows
from ansible_collections.clinops.upgrade.plugins.module_utils.service.spec import (
    MUTUALLY_EXCLUSIVE,
    argument_spec,
    check_params,
    drain_message,
    parse_count,
    plan,
)

MODULE = 'clinops.upgrade.service_stop_ordered'
KILL_WAIT = 10.0
SC_NOT_STARTED = 1062  # ERROR_SERVICE_NOT_ACTIVE


class WindowsStepFailed(Exception):
    """A step on the Windows host failed; the message says which service and what is alive."""


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = True
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        try:
            if not self._is_windows(task_vars):
                result.update(self._execute_module(module_name=MODULE, module_args=self._task.args, task_vars=task_vars,
                                                   wrap_async=self._task.async_val))
                return result
            if self._task.async_val:
                raise AnsibleActionFail('service_stop_ordered does not support async on Windows hosts')
            result.update(WindowsRun(self, task_vars).run())
            return result
        finally:
            if not self._task.async_val:
                self._remove_tmp_path(self._connection._shell.tmpdir)

    def _is_windows(self, task_vars):
        services = self._task.args.get('services')
        if isinstance(services, list) and any(isinstance(s, dict) and s.get('backend') == 'windows' for s in services):
            return True
        return is_windows(task_vars, self._connection, self._templar)

    def windows_module(self, name, args, task_vars):
        """Run one ansible.windows module on the host (the unit tests replace _execute_module)."""
        return self._execute_module(module_name=name, module_args=args, task_vars=task_vars)


class WindowsRun:
    """One task on a Windows host: checks, drain, stops, starts, each through ansible.windows modules."""

    def __init__(self, action, task_vars):
        self.action = action
        self.task_vars = task_vars
        self.check_mode = bool(action._task.check_mode)
        self.params = None

    def call(self, name, args):
        return self.action.windows_module(name, args, self.task_vars)

    def info(self, name):
        """The win_service_info entry of service ``name`` (exact name or display name), or None."""
        res = self.call('ansible.windows.win_service_info', {'name': name})
        if res.get('failed'):
            raise WindowsStepFailed('win_service_info %s failed: %s' % (name, res.get('msg')))
        for svc in res.get('services') or []:
            if name.lower() in (str(svc.get('name', '')).lower(), str(svc.get('display_name', '')).lower()):
                return svc
        return None

    def run(self):
        dummy, params = self.action.validate_argument_spec(argument_spec=argument_spec(),
                                                           mutually_exclusive=MUTUALLY_EXCLUSIVE)
        errors = check_params(params, windows=True)
        if errors:
            return dict(failed=True, msg='invalid input, nothing was stopped: ' + '; '.join(errors))
        services = [dict(s) for s in params['services']]
        only = params['only']
        scope = [s for s in services if only is None or s['name'] in only]
        stop_order, start_order = plan(services, params['state'], params['reverse'], only)
        self.params = params

        unknown = []
        for svc in scope:
            found = self.info(svc['name'])
            if found is None:
                unknown.append(svc['name'])
                continue
            svc['_before'] = found.get('state') != 'stopped'
        if unknown:
            return dict(failed=True, msg='invalid input, nothing was stopped: no Windows service %s' % ', '.join(unknown))

        entries = dict((s['name'], dict(name=s['name'], backend='windows', before='running' if s['_before'] else 'stopped',
                                        action='none', seconds=0.0)) for s in scope)
        result = dict(changed=False, services=[entries[s['name']] for s in scope], order=[],
                      previously_running=[s['name'] for s in scope if s['_before']])
        to_stop = [s for s in stop_order if s['_before']]
        try:
            if params['drain']:
                self.drain(params['drain'], bool(to_stop), result)
            for index, svc in enumerate(to_stop):
                result['order'].append(svc['name'])
                result['changed'] = True
                entry = entries[svc['name']]
                if self.check_mode:
                    entry['action'] = 'stopped'
                    continue
                try:
                    self.stop(svc, entry)
                except WindowsStepFailed as exc:
                    entry['action'] = 'failed'
                    rest = [s['name'] for s in to_stop[index + 1:]]
                    raise WindowsStepFailed('%s%s' % (exc, '; not touched: %s' % ', '.join(rest) if rest else '')) from exc
            for index, svc in enumerate(start_order):
                entry = entries[svc['name']]
                if entry['action'] == 'none' and svc['_before']:
                    continue
                result['order'].append(svc['name'])
                result['changed'] = True
                new_action = 'restarted' if entry['action'] in ('stopped', 'killed') else 'started'
                if self.check_mode:
                    entry['action'] = new_action
                    continue
                try:
                    self.start(svc, entry)
                except WindowsStepFailed as exc:
                    entry['action'] = 'failed'
                    rest = [s['name'] for s in start_order[index + 1:]]
                    raise WindowsStepFailed('%s%s' % (exc, '; not started: %s' % ', '.join(rest) if rest else '')) from exc
                entry['action'] = new_action
        except WindowsStepFailed as exc:
            result.update(failed=True, msg=str(exc))
        return result

    # -- drain: users logged off / tasks finished

    def drain(self, drain, needed, result):
        info = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False)
        result['drain'] = info
        if not needed:
            info['skipped'] = 'no service in scope is running'
            return
        if self.check_mode:
            info['skipped'] = 'check mode'
            return
        started = time.monotonic()
        deadline = started + drain['max_wait']
        info['count'] = self.count(drain)
        info['polls'] = 1
        if info['count'] > 0 and drain['broadcast']:
            seconds_left = max(int(deadline - time.monotonic()), 1)
            text = drain_message(drain['broadcast'], seconds_left, info['count'])
            res = self.call('ansible.windows.win_command', {'argv': ['msg.exe', '*', '/TIME:%d' % seconds_left, text]})
            info['message_sent'] = not res.get('failed')
        while info['count'] > 0 and time.monotonic() < deadline:
            time.sleep(min(drain['interval'], max(deadline - time.monotonic(), 0.01)))
            info['count'] = self.count(drain)
            info['polls'] += 1
        info['waited'] = round(time.monotonic() - started, 3)
        if info['count'] > 0:
            info['timed_out'] = True
            if drain['on_timeout'] == 'fail':
                raise WindowsStepFailed('drain: the count is still %s after %s s (max_wait); nothing was stopped' % (
                    info['count'], drain['max_wait']))
            result.setdefault('warnings', []).append(
                'drain: the count is still %s after %s s; stopping anyway (on_timeout=proceed)' % (info['count'], drain['max_wait']))

    def count(self, drain):
        res = self.call('ansible.windows.win_command', {'cmd': drain['command']})
        if res.get('failed') or res.get('rc', 0) != 0:
            raise WindowsStepFailed('drain.command %s failed before anything was stopped: %s' % (
                drain['command'], res.get('msg') or res.get('stderr') or res.get('rc')))
        count = parse_count(res.get('stdout', ''))
        if count is None:
            raise WindowsStepFailed('drain.command %s printed no number before anything was stopped' % drain['command'])
        return count

    # -- one service

    def alive(self, svc):
        """Words for what keeps ``svc`` up, or ''."""
        found = self.info(svc['name'])
        if found is None or found.get('state') == 'stopped':
            return ''
        pid = found.get('process_id')
        return 'state %s%s' % (found.get('state'), ', pid %s alive' % pid if pid else '')

    def wait_stopped(self, svc, deadline):
        alive = self.alive(svc)
        while alive and time.monotonic() < deadline:
            time.sleep(min(self.params['poll_interval'], max(deadline - time.monotonic(), 0.01)))
            alive = self.alive(svc)
        return alive

    def port(self, svc, state, deadline):
        """Wait for the port to close (``stopped``) or open (``started``); the failure text, or ''."""
        if not svc['port']:
            return ''
        args = {'host': svc['host'], 'port': svc['port'], 'state': state, 'timeout': max(int(deadline - time.monotonic()), 1)}
        res = self.call('ansible.windows.win_wait_for', args)
        if res.get('failed'):
            return 'port %s %s' % (svc['port'], 'open' if state == 'stopped' else 'closed')
        return ''

    def stop(self, svc, entry):
        started = time.monotonic()
        deadline = started + svc['timeout']
        res = self.call('ansible.windows.win_command', {'argv': ['sc.exe', 'stop', svc['name']]})
        if res.get('rc') not in (0, SC_NOT_STARTED):
            entry['seconds'] = round(time.monotonic() - started, 3)
            raise WindowsStepFailed('service %s: sc.exe stop exited with %s: %s' % (
                svc['name'], res.get('rc'), (res.get('stdout') or res.get('msg') or '').strip()[-300:]))
        alive = self.wait_stopped(svc, deadline)
        action = 'stopped'
        if alive and svc['kill_after']:
            found = self.info(svc['name']) or {}
            if found.get('process_id'):
                self.call('ansible.windows.win_command', {'argv': ['taskkill.exe', '/F', '/PID', str(found['process_id'])]})
            alive = self.wait_stopped(svc, time.monotonic() + KILL_WAIT)
            action = 'killed'
            if alive:
                alive += ' (%d s after taskkill /F)' % KILL_WAIT
        if not alive:
            alive = self.port(svc, 'stopped', max(deadline, time.monotonic() + 1))
        entry['seconds'] = round(time.monotonic() - started, 3)
        if alive:
            raise WindowsStepFailed('service %s did not stop within %s s: %s' % (svc['name'], svc['timeout'], alive))
        entry['action'] = action

    def start(self, svc, entry):
        started = time.monotonic()
        deadline = started + svc['timeout']
        res = self.call('ansible.windows.win_service', {'name': svc['name'], 'state': 'started'})
        if res.get('failed'):
            entry['seconds'] = round(entry['seconds'] + time.monotonic() - started, 3)
            raise WindowsStepFailed('service %s failed to start: %s' % (svc['name'], res.get('msg')))
        missing = self.port(svc, 'started', deadline)
        entry['seconds'] = round(entry['seconds'] + time.monotonic() - started, 3)
        if missing:
            raise WindowsStepFailed('service %s did not start within %s s: %s' % (svc['name'], svc['timeout'], missing))
