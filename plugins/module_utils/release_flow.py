# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A product's own update flow around the engine's steps, read from the profile (KSAMU is the first to use it):
release channels, major or minor from the version's blocks, the product's background tasks stopped first and started
again at the end whatever happened, a warning counted down on every user's screen, the product's database lock, the
vendor's updater followed through its log, and clients asked to log in again.

Everything here is data-driven: the product's commands come as argv lists (``{message}``, ``{minutes}``, ``{version}``
filled in), so a new product is a new profile. :class:`Flow` runs the engine's flow steps (FLOW_STEPS) for
``upgrade_cutover``'s option ``flow``; the functions above it are pure and unit-tested.
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.clinops.upgrade.plugins.module_utils import followlog as _followlog
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed

TAIL = 15


def run_following(host, argv, log_path, progress_re, error_re, stall_timeout, timeout, on_line=None):
    """The vendor's updater run and followed through its log (followlog.run_following), and judged: returns
    dict(rc, progress=[its progress lines], tail, seconds); StepFailed with the log's last lines on an error line, a log
    that stops growing for ``stall_timeout`` seconds, a run past ``timeout`` or a non-zero exit.  ``on_line(line)`` gets
    each progress line as it comes."""
    error_pat = _followlog.compile_or_none(error_re, 'error')
    progress = []

    def take(line, found):
        if found is not None and not (error_pat and error_pat.search(line)):
            progress.append(line)
            if on_line is not None:
                on_line(line)

    try:
        result = _followlog.run_following(host, argv, log_path=log_path, progress_re=progress_re, error_re=error_re,
                                          stall_timeout=stall_timeout, timeout=timeout, on_line=take)
    except OSError as exc:
        raise StepFailed('cannot run %s: %s' % (argv[0], exc)) from exc
    last = '\n'.join(result['lines'][-TAIL:]) or '(the log has no new lines)'
    if result['ended'] == 'timeout':
        raise StepFailed('%s did not end within %ss; the last lines of its log:\n%s' % (argv[0], timeout, last))
    if result['ended'] == 'stalled':
        raise StepFailed('%s stalled: its log %s did not grow for %ss; the last lines of its log:\n%s'
                         % (argv[0], log_path, stall_timeout, last))
    if result['errors'] or result['rc'] != 0:
        what = 'reported an error' if result['errors'] else 'ended with exit code %s' % result['rc']
        out = '\n'.join(result['output']).strip()
        output_tail = ('\nits output: ' + out[-500:]) if out else ''
        raise StepFailed('%s %s; the last lines of its log:\n%s%s' % (' '.join(str(a) for a in argv[:2]), what, last, output_tail))
    return dict(rc=result['rc'], progress=progress, tail=result['lines'][-TAIL:], seconds=result['seconds'])


FLOW_STEPS = ('tasks_stop', 'warn', 'lock', 'update', 'unlock', 'relogin', 'tasks_start')
# Steps a minor update leaves out when the profile says so (migrations.major_only_offline): no warning, no lock, no
# stop of the services (users keep their sessions), no request to log in again.
MAJOR_ONLY = ('warn', 'lock', 'stop', 'start', 'unlock', 'relogin')
CHANNELS = ('stable', 'test')
MANUAL_ONLY_CHANNELS = ('test',)


class ReleaseError(ValueError):
    """A release cannot be picked (unknown channel or version, a bad listing, a test release on a scheduled run)."""


# ---------------------------------------------------------------- versions, kinds, channels (pure)

def blocks(version):
    """The version's numeric blocks as a tuple (6.0.51.22966 -> (6, 0, 51, 22966)); ValueError when not all numbers."""
    parts = str(version).strip().split('.')
    if not parts or not all(p.isdigit() for p in parts):
        raise ValueError('%r is not a version of numeric blocks (like 6.0.51.22966)' % version)
    return tuple(int(p) for p in parts)


def upgrade_kind(installed, target, major_blocks):
    """``none`` (the same version), ``major`` (one of the first ``major_blocks`` blocks differs: for KSAMU the
    database scripts' version) or ``minor``."""
    if blocks(installed) == blocks(target):
        return 'none'
    return 'major' if blocks(installed)[:major_blocks] != blocks(target)[:major_blocks] else 'minor'


def read_listing(text):
    """The release source's listing (JSON ``{"channels": {name: [{"version": ..., "file": ...}]}}``) checked."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReleaseError('the release listing is not JSON: %s' % exc) from exc
    channels = data.get('channels') if isinstance(data, dict) else None
    if not isinstance(channels, dict):
        raise ReleaseError('the release listing has no "channels" mapping')
    for name, releases in channels.items():
        if not isinstance(releases, list) or not all(isinstance(r, dict) and r.get('version') and r.get('file') for r in releases):
            raise ReleaseError('channel %r of the release listing must be a list of {version, file}' % name)
        for release in releases:
            blocks(release['version'])
            if '/' in release['file'] or release['file'].startswith('.'):
                raise ReleaseError('release file %r must be a plain file name in the release source' % release['file'])
    return channels


def pick_release(channels, channel, version=None, by_hand=False, manual_only=MANUAL_ONLY_CHANNELS):
    """The release to install: ``version`` when asked (it must be on ``channel``), else the newest of ``channel``.
    A ``manual_only`` channel (test) is refused unless the run was started by hand."""
    if channel not in channels:
        raise ReleaseError('channel %r is not in the release listing (it has: %s)' % (channel, ', '.join(sorted(channels)) or 'none'))
    if channel in manual_only and not by_hand:
        raise ReleaseError('channel %r is installed only by a run started by hand (upgrade_by_hand=true), never by a '
                           'scheduled run; nothing was changed' % channel)
    releases = channels[channel]
    if version:
        found = [r for r in releases if r['version'] == str(version)]
        if not found:
            raise ReleaseError('version %s is not on channel %r (it has: %s)'
                               % (version, channel, ', '.join(r['version'] for r in releases) or 'none'))
        release = found[0]
    elif not releases:
        raise ReleaseError('channel %r has no release' % channel)
    else:
        release = max(releases, key=lambda r: blocks(r['version']))
    return dict(version=release['version'], file=release['file'], channel=channel)


def countdown_points(minutes, points):
    """The minutes left at which the warning is said: the start, then each of ``points`` below it, largest first."""
    return [minutes] + sorted({p for p in points if 0 < p < minutes}, reverse=True)


def fill(value, **values):
    """``value`` (a string, or an argv list of them) with ``{name}`` filled in from ``values``."""
    if isinstance(value, list):
        return [fill(v, **values) for v in value]
    text = str(value)
    for key, val in values.items():
        text = text.replace('{%s}' % key, str(val))
    return text


def flow_problems(flow):
    """Input errors of the option ``flow`` (found before anything is touched)."""
    errors = []
    if not flow:
        return errors
    for key in ('from_version', 'target'):
        if flow.get(key):
            try:
                blocks(flow[key])
            except ValueError as exc:
                errors.append('flow.%s: %s' % (key, exc))
    for key, value in (flow.get('tasks') or {}).items():
        if key in ('list', 'stop', 'start') and value is not None and not value:
            errors.append('flow.tasks.%s must be a command (argv list)' % key)
    if flow.get('tasks') and not all((flow['tasks'] or {}).get(k) for k in ('list', 'stop', 'start')):
        errors.append('flow.tasks needs the commands list, stop and start')
    if flow.get('lock') and not all((flow['lock'] or {}).get(k) for k in ('lock', 'unlock')):
        errors.append('flow.lock needs the commands lock and unlock')
    warning = flow.get('warning') or {}
    if warning and (not warning.get('argv') or warning.get('minutes', 8) < 0 or warning.get('seconds_per_minute', 60) < 0):
        errors.append('flow.warning needs argv (with {message}), minutes and seconds_per_minute of 0 or more')
    updater = flow.get('updater') or {}
    if updater:
        if not updater.get('argv') or not updater.get('log'):
            errors.append('flow.updater needs argv and log')
        for key in ('progress', 'error'):
            try:
                re.compile(updater.get(key) or '')
            except re.error as exc:
                errors.append('flow.updater.%s is not a regular expression: %s' % (key, exc))
    return errors


# ---------------------------------------------------------------- the steps

class Flow:
    """The flow steps of one engine run (``cut`` is the :class:`~cutover.Cutover`: its host, params, data, journal)."""

    def __init__(self, cut):
        self.cut = cut
        self.f = cut.p.get('flow') or {}

    @property
    def active(self):
        return bool(self.f)

    @property
    def kind(self):
        f = self.f
        if f.get('kind'):
            return f['kind']
        source = f.get('from_version') or self.cut.data.get('from_version')
        if not source:
            return 'major'               # not knowable: the safe side
        return upgrade_kind(source, f.get('target') or self.cut.p['target'], f.get('major_blocks') or 3)

    def skips(self, step):
        """A step this run leaves out: the major-only ones in a minor update (migrations.major_only_offline)."""
        return self.active and self.f.get('major_only_offline') and self.kind == 'minor' and step in MAJOR_ONLY

    def values(self, **more):
        return dict(version=self.cut.p['target'], kind=self.kind, **more)

    def command(self, argv, what, **values):
        result = self.cut.host.run(fill(list(argv), **self.values(**values)), timeout=float(self.f.get('command_timeout') or 60))
        if result['rc'] != 0:
            raise StepFailed('%s failed (exit code %s): %s' % (what, result['rc'], (result['stdout'] + result['stderr']).strip()[-500:]))
        return result['stdout']

    def say(self, template, **values):
        """Broadcast a message to the server and every logged-on user (the warning's command); returns the text."""
        warning = self.f.get('warning') or {}
        text = fill(template, **self.values(**values))
        if warning.get('argv'):
            self.command(warning['argv'], 'the broadcast', message=text)
        return text

    def running_tasks(self):
        tasks = self.f['tasks']
        out = self.command(tasks['list'], 'listing the background tasks')
        pattern = re.compile(tasks.get('running') or r'\brunning\b')
        return [line.strip() for line in out.splitlines() if pattern.search(line)]

    # -- steps -----------------------------------------------------------------------------------------------------
    def do_tasks_stop(self):
        tasks = self.f.get('tasks')
        if not tasks:
            return None
        started = time.monotonic()
        running = self.running_tasks()
        self.command(tasks['stop'], 'stopping the background tasks')
        deadline = started + float(tasks.get('timeout') or 600)
        while True:
            still = self.running_tasks()
            if not still:
                break
            if time.monotonic() > deadline:
                raise StepFailed('background tasks still running %ss after the stop: %s' % (tasks.get('timeout') or 600, '; '.join(still)))
            time.sleep(0.5)
        return dict(tasks_stopped=True, tasks_running_at_stop=running, tasks_waited_s=round(time.monotonic() - started, 3))

    def do_warn(self):
        warning = self.f.get('warning') or {}
        if not warning or self.skips('warn'):
            return None
        minutes, scale = int(warning.get('minutes', 8)), float(warning.get('seconds_per_minute', 60))
        points = countdown_points(minutes, warning.get('points') or [5, 2, 1])
        start = time.monotonic()
        said = []
        for left in points:
            time.sleep(max(0.0, start + (minutes - left) * scale - time.monotonic()))
            text = self.say(warning.get('text') or 'Update to {version}: the database is locked in {minutes} min.', minutes=left)
            said.append(dict(minutes=left, at=self.cut.host.clock()['utc'], message=text))
        time.sleep(max(0.0, start + minutes * scale - time.monotonic()))
        return dict(warned=said, warning_minutes=minutes, warning_seconds_per_minute=scale)

    def do_lock(self):
        lock = self.f.get('lock')
        if not lock or self.skips('lock'):
            return None
        self.command(lock['lock'], 'locking the database')
        return dict(db_locked=True, locked_at=self.cut.host.clock()['utc'])

    def do_update(self):
        updater = self.f.get('updater')
        if not updater:
            return None
        module = self.cut.module

        def on_line(line):
            module.log('updater: %s' % line)   # the host's journal (syslog / journald)

        result = run_following(self.cut.host, fill(list(updater['argv']), **self.values()), fill(updater['log'], **self.values()),
                               updater.get('progress') or r'\bINFO\b', updater.get('error') or r'\bERROR\b',
                               float(updater.get('stall_timeout') or 300), float(updater.get('timeout') or 3600), on_line)
        return dict(update_progress=result['progress'][-40:], update_seconds=result['seconds'])

    def do_unlock(self):
        if not self.f.get('lock') or not self.cut.data.get('db_locked'):
            return None
        self.command(self.f['lock']['unlock'], 'unlocking the database')
        return dict(db_locked=False, unlocked_at=self.cut.host.clock()['utc'])

    def do_relogin(self):
        message = self.f.get('relogin_message')
        if not message or self.skips('relogin'):
            return None
        return dict(relogin_asked=self.say(message))

    def do_tasks_start(self):
        if not self.f.get('tasks') or not self.cut.data.get('tasks_stopped'):
            return None
        self.command(self.f['tasks']['start'], 'starting the background tasks')
        return dict(tasks_stopped=False, tasks_started_at=self.cut.host.clock()['utc'])

    # -- after a rollback ------------------------------------------------------------------------------------------
    def after_rollback(self, touched, restored):
        """What the flow owes after a failure, whatever else happened: unlock the database (the restored copy was
        taken under the lock), tell the users, start the background tasks. Returns (what was done, problems)."""
        done, problems = [], []
        data = self.cut.data
        if self.f.get('lock') and ('lock' in touched or data.get('db_locked')):
            self.attempt(lambda: self.command(self.f['lock']['unlock'], 'unlocking the database'), 'the database was unlocked',
                         done, problems)
        if self.f.get('failed_message') and self.f.get('warning') and ('warn' in touched or 'lock' in touched or restored):
            self.attempt(lambda: self.say(self.f['failed_message']), 'the users were told', done, problems)
        if self.f.get('tasks') and ('tasks_stop' in touched or data.get('tasks_stopped')):
            self.attempt(lambda: self.command(self.f['tasks']['start'], 'starting the background tasks'),
                         'the background tasks were started again', done, problems)
        return done, problems

    @staticmethod
    def attempt(action, said, done, problems):
        try:
            action()
            done.append(said)
        except StepFailed as exc:
            problems.append(exc.msg)
