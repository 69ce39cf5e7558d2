# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a program and follow its log while it runs (a vendor's installer, an update tool, a rebuild job).

:func:`run_following` starts the program, reads the lines its log file (or, without one, its own output) gains,
hands each to a callback with the progress the line shows, and ends the program when it runs too long or writes
nothing for too long.  It judges nothing: the caller decides from the result (exit code, error lines, progress).

    result = run_following(host, argv, log_path='/var/log/setup.log', progress_re=r'Progress (?P<percent>\\d+)%',
                           error_re=r'\\bERROR\\b', stall_timeout=300, timeout=3600,
                           on_line=lambda line, progress: journal.record(...))

A host object that runs programs elsewhere (a Windows host) may provide its own ``run_following`` with the same
arguments and result; it is used when present.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time

KEEP_LINES = 200


def compile_or_none(pattern, what):
    """``pattern`` compiled, or None when empty; ValueError naming ``what`` when it is not a regular expression."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError('%s is not a regular expression: %s' % (what, exc)) from exc


def progress_of(match):
    """What a progress match says: its named groups (done/total/percent...) as numbers where they are, else the text."""
    if match is None:
        return None
    groups = match.groupdict() or ({'value': match.group(1)} if match.re.groups else {'value': match.group(0)})
    found = {}
    for key, value in groups.items():
        if value is None:
            continue
        try:
            found[key] = int(value)
        except ValueError:
            found[key] = value
    if 'done' in found and 'total' in found and isinstance(found['done'], int) and isinstance(found['total'], int):
        found['percent'] = round(100.0 * found['done'] / found['total'], 1) if found['total'] else 100.0
    return found


class _Reader:
    """New complete lines of a growing file, from an offset on (a partial last line waits for its end)."""

    def __init__(self, path, offset=0):
        self.path = path
        self.offset = offset
        self.rest = b''

    def lines(self, final=False):
        try:
            with open(self.path, 'rb') as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.rest + data
        parts = data.split(b'\n')
        self.rest = b'' if final else parts.pop()
        return [p.decode('utf-8', 'replace').rstrip('\r') for p in parts if p.strip()]


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()


def run_following(host, argv, log_path=None, progress_re=None, error_re=None, stall_timeout=None, timeout=3600.0,
                  on_line=None, cwd=None, env=None, poll=0.2):
    """Run ``argv`` and follow ``log_path`` (its output when None) until it ends.

    ``on_line(line, progress)`` is called for every new line (``progress``: what ``progress_re`` found in it, or None).
    The program (its whole process group) is ended when it runs past ``timeout`` seconds, or writes no line for
    ``stall_timeout`` seconds.  Returns dict(rc, ended ('exited', 'timeout', 'stalled'), seconds, lines (the last
    200), errors (the lines ``error_re`` matched), progress (the last progress seen), output (the last lines of the
    program's own output)).  OSError when the program cannot start.
    """
    if host is not None and callable(getattr(host, 'run_following', None)):
        return host.run_following(argv, log_path=log_path, progress_re=progress_re, error_re=error_re,
                                  stall_timeout=stall_timeout, timeout=timeout, on_line=on_line, cwd=cwd, env=env)
    progress_pattern = compile_or_none(progress_re, 'progress_re')
    error_pattern = compile_or_none(error_re, 'error_re')
    offset = os.path.getsize(log_path) if log_path and os.path.isfile(log_path) else 0
    with tempfile.NamedTemporaryFile(prefix='clinops-follow-', suffix='.out', delete=False) as out:
        out_path = out.name
    result = dict(rc=None, ended='exited', seconds=0.0, lines=[], errors=[], progress=None, output=[])
    started = last_line = time.monotonic()
    try:
        with open(out_path, 'wb') as out:
            proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        readers = [_Reader(log_path, offset)] if log_path else []
        output = _Reader(out_path)
        followed = readers[0] if readers else output

        def take(lines):
            for line in lines:
                result['lines'] = (result['lines'] + [line])[-KEEP_LINES:]
                progress = progress_of(progress_pattern.search(line)) if progress_pattern else None
                if progress is not None:
                    result['progress'] = progress
                if error_pattern and error_pattern.search(line):
                    result['errors'].append(line)
                if on_line is not None:
                    on_line(line, progress)

        while proc.poll() is None:
            time.sleep(poll)
            lines = followed.lines()
            now = time.monotonic()
            if lines:
                last_line = now
                take(lines)
            if now - started > timeout:
                result['ended'] = 'timeout'
                _kill(proc)
            elif stall_timeout and now - last_line > stall_timeout:
                result['ended'] = 'stalled'
                _kill(proc)
        take(followed.lines(final=True))
        result['rc'] = proc.returncode
        if followed is not output:
            result['output'] = output.lines(final=True)[-20:]
        else:
            result['output'] = result['lines'][-20:]
    finally:
        os.unlink(out_path)
    result['seconds'] = round(time.monotonic() - started, 3)
    return result


def describe(result, what='the program'):
    """One sentence on how a followed program ended, for a failure message."""
    if result['ended'] == 'timeout':
        head = '%s ran past its time limit and was ended' % what
    elif result['ended'] == 'stalled':
        head = '%s wrote nothing for too long and was ended' % what
    else:
        head = '%s exited with code %s' % (what, result['rc'])
    detail = result['errors'][-1] if result['errors'] else (result['lines'] or result['output'] or [''])[-1]
    return head + (': %s' % detail.strip()[:300] if detail else '')
