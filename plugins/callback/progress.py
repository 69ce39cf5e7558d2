# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The callback clinops.upgrade.progress: one line per host step as it ends, and a running total per play."""

from __future__ import annotations

DOCUMENTATION = r"""
name: progress
type: aggregate
short_description: One line per host step of an upgrade as it ends, and a running total per play
version_added: 0.1.0
author:
  - clinops.upgrade contributors (@clinops)
description:
  - Prints, beside the usual output (it does not replace the stdout callback), one line per step of a host's upgrade
    as it ends, read from what the roles of clinops.upgrade return - the steps of M(clinops.upgrade.upgrade_cutover)
    with their result and seconds, and each host's verdict as the roles record it for the report (pending, refused,
    not reached, planned, upgraded, rolled back, held back, failed) - and after each of them a running total of the
    play - hosts done out of the play's hosts, failed, held back, not reached, and the servers' downtime so far.
  - A task that fails or a host that cannot be reached outside those steps is printed as a step line too. At the end,
    the totals of the whole run.
  - It stays silent when the stdout callback writes JSON (V(json), V(ansible.posix.json), V(ansible.posix.jsonl)), as a
    program reads that output and a line of text would spoil it.
  - Enable it with O(ignore:callbacks_enabled=clinops.upgrade.progress) in C(ansible.cfg) (the collection's example
    C(ansible.cfg) does). It only prints; it reads nothing from the hosts, keeps no files and contacts nothing, so it
    is harmless under AWX and ansible-runner (its lines are ordinary output lines of the job).
requirements:
  - enabled with C(callbacks_enabled) (or E(ANSIBLE_CALLBACKS_ENABLED))
options:
  show_totals:
    description: Print the running total of the play after each step line.
    type: bool
    default: true
    env:
      - name: CLINOPS_PROGRESS_TOTALS
    ini:
      - section: callback_clinops_progress
        key: show_totals
  prefix:
    description: What each line begins with, to find them in a job's output.
    type: str
    default: "[progress]"
    env:
      - name: CLINOPS_PROGRESS_PREFIX
    ini:
      - section: callback_clinops_progress
        key: prefix
"""

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

# The results the roles record in upgrade_host_report (roles/upgrade/tasks/summary.yml and the report role).
FINAL = ('upgraded', 'current', 'rolled_back', 'failed', 'held_back', 'not_reached', 'refused')
FAILED = ('rolled_back', 'failed', 'refused')
JSON_STDOUT = ('json', 'ansible.posix.json', 'ansible.posix.jsonl', 'jsonl', 'ansible.builtin.json')
DOWNTIME_STEPS = ('stop', 'backup', 'swap', 'prefs', 'migrate_offline', 'start', 'verify', 'restart_after_verify')


def _seconds(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class PlayProgress:
    """What one play has seen of its hosts."""

    def __init__(self, name, hosts, check_mode=False):
        self.name = name
        self.hosts = list(hosts)
        self.check_mode = check_mode
        self.result = {}        # host -> the last result the roles recorded
        self.role = {}          # host -> server / client
        self.downtime = {}      # server -> seconds of downtime so far
        self.lost = {}          # host -> 'failed' / 'unreachable' (a task's failure outside the roles' results)

    def see_host(self, host):
        if host not in self.hosts and host != 'localhost':
            self.hosts.append(host)

    def final(self, host):
        result = self.result.get(host)
        return result in FINAL or (self.check_mode and result == 'planned') or host in self.lost

    def totals(self):
        hosts = [h for h in self.hosts if h != 'localhost'] or list(self.hosts)
        done = [h for h in hosts if self.final(h)]
        failed = [h for h in hosts if self.result.get(h) in FAILED or self.lost.get(h) == 'failed']
        held = [h for h in hosts if self.result.get(h) == 'held_back']
        unreached = [h for h in hosts if self.result.get(h) == 'not_reached' or self.lost.get(h) == 'unreachable']
        return {'done': len(done), 'total': len(hosts), 'failed': len(failed), 'held_back': len(held),
                'not_reached': len(unreached), 'downtime_s': sum(self.downtime.values()), 'servers': len(self.downtime)}


class CallbackModule(CallbackBase):
    """One line per host step as it ends, and a running total per play."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'clinops.upgrade.progress'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.play = None
        self.run = PlayProgress('the run', [])
        self.prefix = '[progress]'
        self.show_totals = True
        self.silent = str(getattr(C, 'DEFAULT_STDOUT_CALLBACK', '') or '') in JSON_STDOUT

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.prefix = self.get_option('prefix')
        self.show_totals = self.get_option('show_totals')

    # -- what is printed
    def emit(self, text):
        if not self.silent:
            self._display.display('%s %s' % (self.prefix, text))

    def emit_totals(self, play=None):
        play = play or self.play
        if not self.show_totals or play is None:
            return
        t = play.totals()
        line = '%s: hosts done %d/%d, failed %d, held back %d, not reached %d' % (
            play.name, t['done'], t['total'], t['failed'], t['held_back'], t['not_reached'])
        if t['servers']:
            line += ', servers\' downtime so far %.1f s' % t['downtime_s']
        self.emit(line)

    # -- the events
    def v2_playbook_on_play_start(self, play):
        hosts = []
        check_mode = False
        try:
            variables = play.get_variable_manager().get_vars(play=play)
            hosts = list(variables.get('ansible_play_hosts_all') or [])
            check_mode = bool(variables.get('ansible_check_mode'))
        except Exception:  # pylint: disable=broad-except
            hosts = []   # the hosts are then counted as they answer
        self.play = PlayProgress(play.get_name().strip() or 'play', hosts, check_mode)

    def v2_runner_on_ok(self, result):
        self.on_result(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            return
        host = _host(result)
        self.ensure_play().see_host(host)
        data = _data(result)
        if isinstance(data.get('steps'), list):
            self.read(host, data)       # the engine's steps up to the one that failed (a rescue rolls back)
        line = '%s: task "%s" FAILED: %s' % (host, _task(result).get_name().strip(), _message(_data(result)))
        if host == 'localhost':
            self.emit(line)     # the controller's work (the report's verdict), not a host of the site
            return
        self.play.lost[host] = self.run.lost[host] = 'failed'
        self.run.see_host(host)
        self.emit(line)
        self.emit_totals()

    def v2_runner_on_unreachable(self, result):
        host = _host(result)
        self.ensure_play().see_host(host)
        if _task(result).ignore_unreachable:
            return      # the roles record it as not reached, printed with their result
        self.play.lost[host] = self.run.lost[host] = 'unreachable'
        self.run.see_host(host)
        self.emit('%s: NOT REACHED: %s' % (host, _message(_data(result))))
        self.emit_totals()

    def v2_playbook_on_stats(self, stats):
        if self.run.result or self.run.lost:
            self.emit_totals(self.run)

    # -- reading the roles' results
    def ensure_play(self):
        if self.play is None:
            self.play = PlayProgress('play', [])
        return self.play

    def on_result(self, result):
        host = _host(result)
        data = _data(result)
        play = self.ensure_play()
        play.see_host(host)
        printed = False
        items = data.get('results') if isinstance(data.get('results'), list) else [data]
        for item in items:
            if isinstance(item, dict):
                printed = self.read(host, item) or printed
        if printed:
            self.emit_totals()

    def read(self, host, data):
        printed = False
        steps = data.get('steps')
        if isinstance(steps, list) and steps and isinstance(steps[0], dict) and 'step' in steps[0]:
            downtime = 0.0
            for step in steps:
                seconds = _seconds(step.get('seconds'))
                line = '%s: %s %s' % (host, step.get('step'), step.get('result', ''))
                if seconds is not None:
                    line += ' %.1f s' % seconds
                    if step.get('step') in DOWNTIME_STEPS and step.get('result') != 'skipped':
                        downtime += seconds
                if step.get('message'):
                    line += ' - %s' % step['message']
                self.emit(line)
            if downtime and self.play.role.get(host, 'server') == 'server' and host not in self.play.downtime:
                self.play.downtime[host] = self.run.downtime[host] = downtime
            printed = True
        facts = data.get('ansible_facts')
        report = facts.get('upgrade_host_report') if isinstance(facts, dict) else None
        if isinstance(report, dict) and report.get('result'):
            printed = self.read_report(host, report) or printed
        return printed

    def read_report(self, host, report):
        play = self.play
        result = report['result']
        role = report.get('role') or ''
        self.run.see_host(host)
        for seen in (play, self.run):
            if role:
                seen.role[host] = role
            if role == 'server' and _seconds(report.get('downtime_s')) is not None:
                seen.downtime[host] = _seconds(report['downtime_s'])
        self.run.result[host] = result
        self.run.lost.pop(host, None)
        play.lost.pop(host, None)       # a failure the role rescued: its result says how it ended
        if play.result.get(host) == result:
            return False
        play.result[host] = result
        line = '%s (%s): %s' % (host, role or '?', result.replace('_', ' '))
        versions = '%s -> %s' % (report.get('from_version') or '?', report.get('to_version') or '?')
        if result not in ('not_reached',):
            line += ' ' + versions
        if role == 'server' and _seconds(report.get('downtime_s')) is not None:
            line += ', downtime %.1f s' % _seconds(report['downtime_s'])
        if report.get('message') and result != 'upgraded':
            line += ' - %s' % report['message']
        self.emit(line)
        return True


def _message(data):
    text = data.get('msg') or data.get('message') or data.get('stderr') or ''
    text = str(text).strip().splitlines()
    return text[0][:300] if text else 'no message'


# ansible-core 2.19 names them host, task and result; older versions only _host, _task and _result.
def _host(result):
    host = getattr(result, 'host', None) or getattr(result, '_host')
    return host.get_name()


def _task(result):
    return getattr(result, 'task', None) or getattr(result, '_task')


def _data(result):
    data = getattr(result, 'result', None)
    if data is None:
        data = getattr(result, '_result', None)
    return data or {}
