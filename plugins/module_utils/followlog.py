# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a vendor's program and follow the log it writes: progress lines out as they come, a failure on an error
line, on a log that stops growing (a stall) or on a program that runs too long, with the log's last lines.

    run_following(host, argv, log_path, progress_re, error_re, stall_timeout, timeout, on_line=None)

``host`` is the engine's host object (unused on a POSIX host: the program runs where the module runs). Only what the
program appends to ``log_path`` after its start is read (the log may hold earlier runs). Returns
dict(rc, progress=[progress lines], tail=[last lines], seconds); raises StepFailed otherwise.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import tempfile
import time

from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed

TAIL = 15
POLL = 0.2


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()


def run_following(host, argv, log_path, progress_re, error_re, stall_timeout, timeout, on_line=None):  # pylint: disable=unused-argument
    progress_pat, error_pat = re.compile(progress_re), re.compile(error_re)
    offset, pending = _size(log_path), b''
    progress, tail, errors = [], collections.deque(maxlen=TAIL), []
    started = last_growth = time.monotonic()

    def read_new():
        nonlocal offset, pending, last_growth
        if _size(log_path) < offset:
            offset = 0                   # the log was rotated or replaced: read the new one from its start
        try:
            with open(log_path, 'rb') as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        if not data:
            return
        offset += len(data)
        last_growth = time.monotonic()
        lines = (pending + data).split(b'\n')
        pending = lines.pop()
        for raw in lines:
            line = raw.decode('utf-8', 'replace').rstrip('\r')
            tail.append(line)
            if error_pat.search(line):
                errors.append(line)
            elif progress_pat.search(line):
                progress.append(line)
                if on_line:
                    on_line(line)

    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen([str(a) for a in argv], stdout=output, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise StepFailed('cannot run %s: %s' % (argv[0], exc)) from exc
        why = None
        while True:
            rc = proc.poll()
            read_new()
            if rc is not None:
                break
            now = time.monotonic()
            if now - started > timeout:
                why = 'did not end within %ss' % timeout
            elif now - last_growth > stall_timeout:
                why = 'stalled: its log %s did not grow for %ss' % (log_path, stall_timeout)
            if why:
                _stop(proc)
                read_new()
                break
            time.sleep(POLL)
        if pending:
            tail.append(pending.decode('utf-8', 'replace'))
        output.seek(0)
        out = output.read().decode('utf-8', 'replace').strip()
    last = '\n'.join(tail) or '(the log has no new lines)'
    if why:
        raise StepFailed('%s %s; the last lines of its log:\n%s' % (argv[0], why, last))
    if errors or proc.returncode != 0:
        what = 'reported an error' if errors else 'ended with exit code %s' % proc.returncode
        output_tail = ('\nits output: ' + out[-500:]) if out else ''
        raise StepFailed('%s %s; the last lines of its log:\n%s%s' % (' '.join(str(a) for a in argv[:2]), what, last, output_tail))
    return dict(rc=proc.returncode, progress=progress, tail=list(tail), seconds=round(time.monotonic() - started, 3))
