# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test and bench equipment (not shipped: galaxy.yml's build_ignore leaves tests/ out): count module executions.

A task is not a round trip: ``set_fact`` runs no module at all, ``copy`` of one file runs ``stat`` and then
``copy``, ``template`` runs more.  This callback counts what really crosses to a host: every call of
``ActionBase._execute_module``, which every action plugin (the generic one for plain modules, copy, template,
gather_facts...) goes through to send a module and run it.  It wraps that method when the callback is loaded, in
the controller process, before any worker is forked; the workers inherit the wrapper.  Each worker appends one
line per execution to a scratch file (one ``os.write`` of a short line with O_APPEND: lines from parallel forks
never interleave), and at the end of the playbook the controller adds them up.

The count goes to the target host: the host the task is delegated to when ``delegate_to`` is set (so a task
delegated to localhost counts for ``localhost``, the controller, not for the host it was written for), else the
inventory host.  Enable it for one run with::

    ANSIBLE_CALLBACK_PLUGINS=<checkout>/tests/integration/callback_plugins
    ANSIBLE_CALLBACKS_ENABLED=module_count
    CLINOPS_MODULE_COUNT=/tmp/counts.json

It writes ``{"host": count, ...}`` to E(CLINOPS_MODULE_COUNT), and ``{"host": {"module": count}}`` beside it
(``<path>.modules.json``), at ``v2_playbook_on_stats``.  Without the variable it counts and writes nothing.

It also counts the tasks each host meets (the controller's per-task, per-host work: a worker fork and the templating
of the task, whether or not a module runs): one per task result the controller receives for the host (ok, changed,
failed, skipped, unreachable; a looped task once, not once per item), written as
``{"host": {"tasks": n, "skipped": k}}`` to ``<path>.tasks.json``.  A ``run_once`` task counts once, for the host
it ran for.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: module_count
type: aggregate
short_description: Count module executions per target host (test and bench equipment)
description:
  - Counts every module an action plugin sends to a host and runs (ActionBase._execute_module), per target host
    (the delegated host when delegate_to is set), and writes the counts as JSON to E(CLINOPS_MODULE_COUNT).
requirements:
  - enabled with E(ANSIBLE_CALLBACKS_ENABLED) and found through E(ANSIBLE_CALLBACK_PLUGINS)
"""

import json
import os
import tempfile

from ansible.plugins.action import ActionBase
from ansible.plugins.callback import CallbackBase

ENV = 'CLINOPS_MODULE_COUNT'
_STATE = {'events': None, 'original': None}


def _target(action, task_vars):
    """The host a module execution of ``action`` goes to: the delegated host, else the inventory host."""
    task = getattr(action, '_task', None)
    delegated = getattr(task, 'delegate_to', None)
    if delegated:
        return str(delegated)
    if task_vars and task_vars.get('inventory_hostname'):
        return str(task_vars['inventory_hostname'])
    return str(getattr(getattr(action, '_play_context', None), 'remote_addr', None) or '?')


def _record(host, module):
    """Append one execution to the scratch file (a single short O_APPEND write: atomic between forks)."""
    events = _STATE['events']
    if not events:
        return
    line = ('%s\t%s\n' % (host.replace('\t', ' ').replace('\n', ' '), module)).encode('utf-8', 'replace')
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _install():
    """Wrap ActionBase._execute_module once (a second load of the callback keeps the first wrapper)."""
    if _STATE['original'] is not None:
        return
    original = ActionBase._execute_module  # pylint: disable=protected-access

    def counted(self, module_name=None, module_args=None, tmp=None, task_vars=None, *args, **kwargs):
        # pylint: disable=keyword-arg-before-vararg
        name = module_name or getattr(getattr(self, '_task', None), 'action', None) or '?'
        try:
            _record(_target(self, task_vars), str(name))
        except OSError:
            pass
        return original(self, module_name, module_args, tmp, task_vars, *args, **kwargs)

    _STATE['original'] = original
    ActionBase._execute_module = counted  # pylint: disable=protected-access


class CallbackModule(CallbackBase):
    """Counts module executions per target host and writes them at the end of the playbook."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'module_count'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tasks = {}
        self._output = os.environ.get(ENV)
        if self._output:
            fd, events = tempfile.mkstemp(prefix='module-count-', suffix='.events',
                                          dir=os.path.dirname(os.path.abspath(self._output)))
            os.close(fd)
            _STATE['events'] = events
            _install()

    def _task_met(self, result, skipped=False):
        host = result._host.get_name()  # pylint: disable=protected-access
        counts = self._tasks.setdefault(host, {'tasks': 0, 'skipped': 0})
        counts['tasks'] += 1
        if skipped:
            counts['skipped'] += 1

    def v2_runner_on_ok(self, result):
        self._task_met(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._task_met(result)

    def v2_runner_on_skipped(self, result):
        self._task_met(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._task_met(result)

    def v2_playbook_on_stats(self, stats):
        events = _STATE['events']
        if not (self._output and events):
            return
        per_host, per_module = {}, {}
        with open(events, encoding='utf-8', errors='replace') as handle:
            for line in handle:
                host, _sep, module = line.rstrip('\n').partition('\t')
                per_host[host] = per_host.get(host, 0) + 1
                modules = per_module.setdefault(host, {})
                modules[module] = modules.get(module, 0) + 1
        os.unlink(events)
        _STATE['events'] = None
        for path, data in ((self._output, per_host), (self._output + '.modules.json', per_module),
                           (self._output + '.tasks.json', self._tasks)):
            tmp = path + '.tmp'
            with open(tmp, 'w', encoding='utf-8') as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
            os.replace(tmp, path)
