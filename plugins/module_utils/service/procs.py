# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process table and ports for service_stop_ordered's POSIX backends: commands with a time limit, detached
programs, pid files, patterns, port probes, a DICOM C-ECHO and the pauses between looks.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import tempfile

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom


# ---------------------------------------------------------------- processes with a time limit / detached

def run_with_deadline(argv, seconds):
    """Run ``argv`` in its own session, waiting at most ``seconds``: ``(rc, output)``; rc None on timeout.

    AnsibleModule.run_command has no time limit; init scripts and stop commands can hang.  The output goes to a
    temporary file, not a pipe, so a daemon that keeps the descriptors open cannot hold the module.
    """
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            return 127, str(exc)
        try:
            rc = proc.wait(timeout=max(seconds, 0.1))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            rc = None
        output.seek(0)
        return rc, output.read()[-4000:].decode('utf-8', 'replace').strip()


def spawn_detached(argv):
    """Start ``argv`` in a new session with no descriptors of ours, and do not wait for it (a server's start script).

    AnsibleModule.run_command waits for the program; a start script that stays in the foreground would hold the task.
    """
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


# ---------------------------------------------------------------- constants of the POSIX backends

FIRST_PAUSE = 0.05  # seconds before the second look at a stopping or starting service
QUICK_PAUSE = 0.1   # then a look every QUICK_PAUSE seconds during the first QUICK_FOR seconds
QUICK_FOR = 3.0
PROBE_EVERY = 1.0   # at most one connection to a service's port per this many seconds (a probe, or a C-ECHO)
DICOM_TIMEOUT = 5.0  # connect, ACSE and DIMSE timeout of the C-ECHO that judges a DICOM service


# ---------------------------------------------------------------- the process table

def pid_alive(pid):
    """Whether ``pid`` is a live process (a zombie is not)."""
    if not pid or pid <= 0:
        return False
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            stat = handle.read()
    except OSError:
        return False
    state = stat[stat.rfind(')') + 2:stat.rfind(')') + 3]
    return state not in ('Z', 'X', '')


def read_pidfile(path):
    """The pid in ``path``, or None when the file is missing or holds no number."""
    if not path:
        return None
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            text = handle.read().strip().split()
    except OSError:
        return None
    try:
        return int(text[0]) if text else None
    except ValueError:
        return None


def _ancestors():
    pids = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
                stat = handle.read()
            pid = int(stat[stat.rfind(')') + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def pattern_pids(regex):
    """Live pids whose command line matches ``regex`` (this module and its ancestors excluded)."""
    skip = _ancestors()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except OSError:
            continue
        if cmdline and regex.search(cmdline) and pid_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def port_open(host, port, timeout=1.0):
    """Whether something accepts TCP connections on ``host:port`` (see :func:`probe_port`)."""
    return probe_port(host, port, timeout) is None


def probe_port(host, port, timeout=1.0):
    """None when something accepts a TCP connection on ``host:port``, else the OSError that says why not.

    The probe sends nothing and is closed at once with a reset (SO_LINGER 0), so the server sees the connection
    end, not a client that has not spoken yet: a DICOM server counts such a client as an association in the
    making until its ACSE timeout. Callers go through :meth:`Context.port_answers`, which probes a port at most
    once per :data:`PROBE_EVERY` seconds.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    sock.close()
    return None


def echo_once(svc, timeout=DICOM_TIMEOUT):
    """One C-ECHO to a DICOM service's port: None when it answered with success, else why not (in words)."""
    peer = dict(_dicom.DEFAULTS, host=svc['host'], port=svc['port'], called_aet=svc['dicom']['called_aet'],
                calling_aet=svc['dicom']['calling_aet'], connect_timeout=timeout, acse_timeout=timeout,
                dimse_timeout=timeout, tls=None)
    _dicom.quiet_pynetdicom()
    answer = _dicom.PeerEcho(peer).once()
    if answer['outcome'] == 'success':
        return None
    return 'no C-ECHO on port %s: %s (%s)' % (svc['port'], answer['outcome'], answer['reason'])


def port_holders(port):
    """Pids of the processes listening on TCP ``port`` on this host (read from /proc/net/tcp*)."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table, encoding='ascii') as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == port:
                inodes.add('socket:[%s]' % fields[9])
    pids = set()
    if not inodes:
        return []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir('/proc/%s/fd' % entry):
                if os.readlink('/proc/%s/fd/%s' % (entry, fd)) in inodes:
                    pids.add(int(entry))
                    break
        except OSError:
            continue
    return sorted(pids)
