# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The task of service_stop_ordered: the order of stops and starts, waiting, killing, and the module's ``run``.

The pure parts (``spec.argument_spec``, ``spec.check_params``, ``spec.plan``) are shared by the module
and by its action plugin, which drives the same order through ansible.windows on Windows hosts.

``spec.module_kwargs`` and :func:`run` are the module: ``run(AnsibleModule(**module_kwargs()))``.  Other modules
(such as upgrade_cutover) call :func:`run` in their own process with an object offering the same few members
of AnsibleModule (``params``, ``check_mode``, ``_diff``, ``fail_json``, ``exit_json``, ``warn``, ``run_command``,
``get_bin_path``); :func:`run` keeps no state between calls, and its ``fail_json``/``exit_json`` may raise any
exception (BaseException included) - nothing here catches it.

The package holds one file per POSIX backend (``supervisor``, ``systemd``, ``sysvinit``, ``script``; Windows services
are driven by the action plugin) on ``backend`` (the base class), ``procs`` (process table and ports), ``spec``
(argument spec, checks, order) and ``drain``.
"""

from __future__ import annotations

import os
import re
import signal
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom
from ansible_collections.clinops.upgrade.plugins.module_utils.service import procs as _procs
from ansible_collections.clinops.upgrade.plugins.module_utils.service import systemd as _systemd
from ansible_collections.clinops.upgrade.plugins.module_utils.service import sysvinit as _sysvinit
from ansible_collections.clinops.upgrade.plugins.module_utils.database import require_driver
from ansible_collections.clinops.upgrade.plugins.module_utils.service.backend import BackendError
from ansible_collections.clinops.upgrade.plugins.module_utils.service.drain import run_drain
from ansible_collections.clinops.upgrade.plugins.module_utils.service.procs import (
    FIRST_PAUSE,
    PROBE_EVERY,
    QUICK_FOR,
    QUICK_PAUSE,
    echo_once,
    pattern_pids,
    port_holders,
    port_open,
    read_pidfile,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.service.script import ScriptBackend
from ansible_collections.clinops.upgrade.plugins.module_utils.service.spec import MUTUALLY_EXCLUSIVE, argument_spec, check_params, plan
from ansible_collections.clinops.upgrade.plugins.module_utils.service.supervisor import (
    Supervisor,
    SupervisorBackend,
    SupervisorError,
    read_supervisor_config,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.service.systemd import SystemdBackend
from ansible_collections.clinops.upgrade.plugins.module_utils.service.sysvinit import SysvinitBackend


KILL_WAIT = 10.0


BACKEND_CLASSES = {
    'supervisor': SupervisorBackend,
    'systemd': SystemdBackend,
    'sysvinit': SysvinitBackend,
    'script': ScriptBackend,
}


# ---------------------------------------------------------------- the task

class Context:
    """What the services of one task share: the module, the supervisord client, found programs."""

    def __init__(self, module):
        self.module = module
        self._supervisor = None
        self._supervisor_names = None
        self._bins = {}
        self.remembered = {}
        self._looks = {}   # (host, port) -> (monotonic time, what, answer) of the last probe or C-ECHO

    def _gently(self, what, svc, look, meanwhile):
        """``look()``'s answer for the service's port, asked at most once per PROBE_EVERY seconds: sooner, the last
        answer of the same kind, or ``meanwhile`` when the last look was of the other kind (a probe, a C-ECHO)."""
        key = (svc['host'], svc['port'])
        last = self._looks.get(key)
        now = time.monotonic()
        if last is not None and now - last[0] < PROBE_EVERY:
            return last[2] if last[1] == what else meanwhile
        answer = look()
        self._looks[key] = (now, what, answer)
        return answer

    def port_answers(self, svc):
        """Whether the service's port accepts connections (one bare probe per PROBE_EVERY seconds at most)."""
        return self._gently('tcp', svc, lambda: port_open(svc['host'], svc['port']), True)

    def dicom_problem(self, svc):
        """Why the DICOM service does not answer a C-ECHO yet, or None (one C-ECHO per PROBE_EVERY seconds at most)."""
        return self._gently('dicom', svc, lambda: echo_once(svc), 'no C-ECHO on port %s tried yet' % svc['port'])

    def bin(self, name, required=True):
        if name not in self._bins:
            self._bins[name] = self.module.get_bin_path(name, required=required)
        return self._bins[name]

    def has_supervisor(self):
        params = self.module.params
        return bool(params['supervisor_config'] or params['supervisor_url'])

    def supervisor(self):
        if self._supervisor is None:
            params = self.module.params
            username, password = params['supervisor_username'], params['supervisor_password']
            if params['supervisor_url']:
                url = params['supervisor_url']
            else:
                url, conf_user, conf_password = read_supervisor_config(params['supervisor_config'])
                username = username or conf_user
                password = password if password is not None else conf_password
            self._supervisor = Supervisor(url, username, password)
        return self._supervisor

    def supervisor_names(self):
        if self._supervisor_names is None:
            self._supervisor_names = self.supervisor().names()
        return self._supervisor_names

    def pidfile(self, svc):
        if svc['pidfile']:
            return svc['pidfile']
        if svc['_backend'] == 'sysvinit':
            guess = '/run/%s.pid' % svc['name']
            return guess if os.path.exists(guess) else None
        return None

    def known_pids(self, svc):
        """Live pids of the service: the backend's, the pidfile's, the pattern's, and those seen before."""
        pids = set(self.remembered.get(svc['name'], ()))
        try:
            pids.update(svc['_impl'].pids())
        except (SupervisorError, BackendError):
            pass
        pid = read_pidfile(self.pidfile(svc))
        if pid:
            pids.add(pid)
        if svc.get('_regex') is not None:
            pids.update(pattern_pids(svc['_regex']))
        return sorted(p for p in pids if _procs.pid_alive(p))

    def remember(self, svc):
        self.remembered.setdefault(svc['name'], set()).update(self.known_pids(svc))


def resolve_backend(ctx, svc):
    """The backend for ``svc``: its own setting, or what auto finds; raises BackendError when none fits."""
    backend = svc['backend']
    if backend != 'auto':
        return backend
    if ctx.has_supervisor() and svc['name'] in ctx.supervisor_names():
        return 'supervisor'
    if svc['start_command'] or svc['stop_command']:
        return 'script'
    if os.path.isdir(_systemd.SYSTEMD_DIR) and ctx.bin('systemctl', required=False):
        svc['_backend'] = 'systemd'
        if SystemdBackend(ctx.module, svc, ctx).check() is None:
            return 'systemd'
    if os.path.exists(os.path.join(_sysvinit.INIT_D, svc['name'])):
        return 'sysvinit'
    if svc['pidfile'] or svc['pattern']:
        return 'script'
    where = []
    if ctx.has_supervisor():
        where.append('not a program of supervisord at %s' % ctx.supervisor().url)
    where.append('no systemd unit' if os.path.isdir(_systemd.SYSTEMD_DIR) else 'no systemd on this host')
    where.append('no %s' % os.path.join(_sysvinit.INIT_D, svc['name']))
    where.append('no start_command, stop_command, pidfile or pattern')
    raise BackendError('cannot find service %s: %s' % (svc['name'], '; '.join(where)))


def is_running(ctx, svc):
    view = svc['_impl'].running()
    if view:
        return True
    if ctx.known_pids(svc):
        return True
    if view is None and not (svc['pidfile'] or svc['pattern']) and svc['port']:
        return ctx.port_answers(svc)
    return False


def what_is_alive(ctx, svc, port_too=False):
    """Words for what keeps the service up, or '' when it is really down.

    The process manager and the process table are asked first; the port is probed only when they say the service
    is gone (to find a stray listener) or with ``port_too`` (for the failure message), at most once per
    PROBE_EVERY seconds.
    """
    parts = []
    try:
        if svc['_impl'].running():
            parts.append(svc['_impl'].describe())
    except (SupervisorError, BackendError) as exc:
        parts.append(to_native(exc))
    pids = ctx.known_pids(svc)
    if pids:
        parts.append('pid %s alive' % ', '.join(str(p) for p in pids))
    if (port_too or not parts) and svc['port'] and ctx.port_answers(svc):
        holders = port_holders(svc['port'])
        parts.append('port %s open%s' % (svc['port'], ' (listening: pid %s)' % ', '.join(str(p) for p in holders) if holders else ''))
    return ', '.join(p for p in parts if p)


def what_is_missing(ctx, svc):
    """Words for what is not up yet, or '' when the service is fully started.

    The process manager, the pidfile and the process table are asked first; only when they say the service runs
    is its port looked at, at most once per PROBE_EVERY seconds: a DICOM service (``dicom``) by a C-ECHO, which
    is released properly, any other by a bare probe closed at once.
    """
    missing = []
    impl = svc['_impl']
    up = impl.up()
    if up is False:
        missing.append(impl.describe() or 'not running')
    if svc['pidfile']:
        pid = read_pidfile(svc['pidfile'])
        if not _procs.pid_alive(pid):
            missing.append('no live pid in %s' % svc['pidfile'])
    if svc.get('_regex') is not None and not pattern_pids(svc['_regex']):
        missing.append('no process matches %s' % svc['pattern'])
    if missing or not svc['port']:
        return ', '.join(missing)
    if svc.get('dicom') is not None:
        return ctx.dicom_problem(svc) or ''
    return '' if ctx.port_answers(svc) else 'port %s closed' % svc['port']


def kill_all(ctx, svc):
    done = []
    try:
        if svc['_impl'].kill():
            done.append(svc['_backend'])
    except (SupervisorError, BackendError):
        pass
    for pid in ctx.known_pids(svc):
        try:
            os.kill(pid, signal.SIGKILL)
            done.append('pid %d' % pid)
        except OSError:
            pass
    return done


def pauses(interval, first=FIRST_PAUSE, quick=QUICK_PAUSE, quick_for=QUICK_FOR):
    """The pauses between two looks at a service: ``first``, then ``quick`` seconds for the first ``quick_for``
    seconds (most services stop or start within them, and each look is cheap), then doubling up to ``interval``."""
    waited = 0.0
    pause = min(first, interval)
    while True:
        yield pause
        waited += pause
        pause = min(pause * 2, interval if waited >= quick_for else min(quick, interval))


def wait_until_gone(ctx, svc, deadline, interval):
    """Poll until nothing of ``svc`` is alive or ``deadline`` passes; returns what is still alive."""
    alive = what_is_alive(ctx, svc)
    pause = pauses(interval)
    while alive and time.monotonic() < deadline:
        time.sleep(min(next(pause), max(deadline - time.monotonic(), 0.01)))
        alive = what_is_alive(ctx, svc)
    return alive


def stop_one(module, ctx, svc, entry):
    """Stop ``svc`` and wait until it is really down; returns an error message or None."""
    started = time.monotonic()
    timeout = svc['timeout']
    deadline = started + timeout
    interval = module.params['poll_interval']
    ctx.remember(svc)
    try:
        svc['_impl'].request_stop(max(deadline - time.monotonic(), 0.1))
    except (SupervisorError, BackendError) as exc:
        entry['action'] = 'failed'
        entry['seconds'] = round(time.monotonic() - started, 3)
        return 'service %s: %s' % (svc['name'], to_native(exc))
    alive = wait_until_gone(ctx, svc, deadline, interval)
    action = 'stopped'
    if alive and svc['kill_after']:
        killed = kill_all(ctx, svc)
        alive = wait_until_gone(ctx, svc, time.monotonic() + KILL_WAIT, min(interval, 0.2))
        action = 'killed'
        if alive:
            alive = '%s (%s s after SIGKILL to %s)' % (what_is_alive(ctx, svc, port_too=True) or alive, int(KILL_WAIT),
                                                       ', '.join(killed) or 'nothing known')
    entry['seconds'] = round(time.monotonic() - started, 3)
    if alive:
        entry['action'] = 'failed'
        if action != 'killed':  # the port too, for the message (the last look skipped it while a process lived)
            alive = what_is_alive(ctx, svc, port_too=True) or alive
        return 'service %s did not stop within %s s: %s' % (svc['name'], timeout, alive)
    entry['action'] = action
    return None


def start_one(module, ctx, svc, entry):
    """Start ``svc`` and wait until it is up (port open); returns an error message or None."""
    started = time.monotonic()
    timeout = svc['timeout']
    deadline = started + timeout
    interval = module.params['poll_interval']
    try:
        svc['_impl'].request_start(max(deadline - time.monotonic(), 0.1))
        missing = what_is_missing(ctx, svc)
        failed = None
        pause = pauses(interval)
        while missing and time.monotonic() < deadline:
            time.sleep(min(next(pause), max(deadline - time.monotonic(), 0.01)))
            missing = what_is_missing(ctx, svc)
            failed = svc['_impl'].start_failed() if missing else None
            if failed:
                break
    except (SupervisorError, BackendError) as exc:
        entry['action'] = 'failed'
        entry['seconds'] = round(time.monotonic() - started, 3)
        return 'service %s: %s' % (svc['name'], to_native(exc))
    entry['seconds'] = round(entry.get('seconds', 0) + time.monotonic() - started, 3)
    if missing:
        entry['action'] = 'failed'
        if failed:
            return 'service %s failed to start: %s' % (svc['name'], failed)
        return 'service %s did not start within %s s: %s' % (svc['name'], timeout, missing)
    entry['action'] = 'restarted' if entry['action'] in ('stopped', 'killed') else 'started'
    return None


def module_kwargs():
    """Keyword arguments for ``AnsibleModule(**module_kwargs())``; fresh objects on every call."""
    return dict(argument_spec=argument_spec(), mutually_exclusive=list(MUTUALLY_EXCLUSIVE), supports_check_mode=True)


def run(module):
    """The module's whole behaviour on ``module`` (an AnsibleModule or an object with the same few members).

    Ends in ``module.exit_json(**result)`` or ``module.fail_json(msg=..., **result)``.  Everything lives in locals
    and in one :class:`Context`, so a second call in the same process starts afresh.
    """
    params = module.params
    errors = check_params(params)
    if errors:
        module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
    drain = params['drain']
    if drain and drain['query']:
        require_driver(module, drain['connection']['engine'])
    if not _dicom.HAS_PYNETDICOM and any(s.get('dicom') is not None for s in params['services']):
        module.fail_json(msg='services with dicom are judged by a C-ECHO, which needs pynetdicom for the Python that '
                             'runs the modules on this host; nothing was stopped', exception=_dicom.PYNETDICOM_IMPORT_ERROR)

    ctx = Context(module)
    services = [dict(svc) for svc in params['services']]
    stop_order, start_order = plan(services, params['state'], params['reverse'], params['only'])
    scope = [s for s in services if params['only'] is None or s['name'] in params['only']]
    errors = []
    try:
        for svc in scope:
            svc['_regex'] = re.compile(svc['pattern']) if svc['pattern'] else None
            svc['_backend'] = resolve_backend(ctx, svc)
            svc['_impl'] = BACKEND_CLASSES[svc['_backend']](module, svc, ctx)
            msg = svc['_impl'].check()
            if msg:
                errors.append(msg)
        if errors:
            module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
        for svc in scope:
            svc['_before'] = is_running(ctx, svc)
    except (SupervisorError, BackendError) as exc:
        module.fail_json(msg='%s; nothing was stopped' % to_native(exc))

    entries = {}
    result = dict(changed=False, services=[], order=[],
                  previously_running=[s['name'] for s in scope if s['_before']])
    for svc in scope:
        entries[svc['name']] = dict(name=svc['name'], backend=svc['_backend'],
                                    before='running' if svc['_before'] else 'stopped', action='none', seconds=0.0)
    result['services'] = [entries[s['name']] for s in scope]

    def finish(failure=None):
        if module._diff:
            before = ''.join('%s: %s\n' % (s['name'], entries[s['name']]['before']) for s in scope)
            after = []
            for svc in scope:
                action = entries[svc['name']]['action']
                state = entries[svc['name']]['before']
                if action in ('stopped', 'killed'):
                    state = 'stopped'
                elif action in ('started', 'restarted'):
                    state = 'running'
                after.append('%s: %s\n' % (svc['name'], state))
            result['diff'] = dict(before=before, after=''.join(after), before_header='services', after_header='services')
        if failure:
            module.fail_json(msg=failure, **result)
        module.exit_json(**result)

    to_stop = [s for s in stop_order if s['_before']]
    if drain and to_stop:
        if module.check_mode:
            result['drain'] = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False, skipped='check mode')
        else:
            run_drain(module, drain, result)
    elif drain:
        result['drain'] = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False,
                               skipped='no service in scope is running')

    for index, svc in enumerate(to_stop):
        entry = entries[svc['name']]
        result['order'].append(svc['name'])
        result['changed'] = True
        if module.check_mode:
            entry['action'] = 'stopped'
            continue
        failure = stop_one(module, ctx, svc, entry)
        if failure:
            rest = [s['name'] for s in to_stop[index + 1:]]
            if rest:
                failure += '; not touched: %s' % ', '.join(rest)
            finish(failure)

    for index, svc in enumerate(start_order):
        entry = entries[svc['name']]
        if module.check_mode:
            running = svc['_before'] and entry['action'] == 'none'
        else:
            try:
                running = entry['action'] == 'none' and is_running(ctx, svc)
            except (SupervisorError, BackendError) as exc:
                finish('service %s: %s' % (svc['name'], to_native(exc)))
        if running:
            continue
        result['order'].append(svc['name'])
        result['changed'] = True
        if module.check_mode:
            entry['action'] = 'restarted' if entry['action'] in ('stopped', 'killed') else 'started'
            continue
        failure = start_one(module, ctx, svc, entry)
        if failure:
            rest = [s['name'] for s in start_order[index + 1:]]
            if rest:
                failure += '; not started: %s' % ', '.join(rest)
            finish(failure)
    finish()
