"""lab/procs.py, the one process control of the lab and the tests' servers, on real processes.

Each test starts real Python processes (a TCP listener on a free 127.0.0.1 port, one that ignores SIGTERM, one with
a child) and checks what /proc and the port say afterwards: no process left, no zombie, the port closed.
"""
import os
import signal
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'lab'))

import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error

LISTENER = ('import socket, sys\n'
            'sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n'
            'sock.bind(("127.0.0.1", int(sys.argv[1]))); sock.listen()\n'
            'print("listening on", sys.argv[1], flush=True)\n'
            'while True:\n'
            '    sock.accept()[0].close()\n')
STUBBORN = ('import signal, time\n'
            'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
            'print("ignoring SIGTERM", flush=True)\n'
            'time.sleep(120)\n')


def in_proc(pid):
    """``pid`` still has an entry in /proc (running, or a zombie nobody reaped)."""
    return os.path.exists('/proc/%d' % pid)


def test_start_wait_stop_leaves_nothing(tmp_path):
    port = procs.free_port()
    log = str(tmp_path / 'listener.log')
    proc = procs.start([sys.executable, '-c', LISTENER, str(port)], log)
    try:
        procs.wait_port(port, timeout=60, proc=proc, log=log)
        assert procs.port_open(port)
        assert os.getsid(proc.pid) == proc.pid          # its own session
        assert procs.cmdline_has(proc.pid, str(port))
    finally:
        assert procs.stop(proc.pid) is True
    assert not in_proc(proc.pid)                        # ended and reaped: not even a zombie
    assert not procs.port_open(port)
    with open(log, encoding='utf-8') as handle:
        assert handle.read() == 'listening on %d\n' % port


def test_wait_names_the_log_when_the_process_ends_first(tmp_path):
    log = str(tmp_path / 'dies.log')
    proc = procs.start([sys.executable, '-c', 'print("cannot bind: the last words"); raise SystemExit(3)'], log)
    with pytest.raises(RuntimeError) as err:
        procs.wait_port(procs.free_port(), timeout=60, proc=proc, log=log)
    assert 'ended first' in str(err.value)
    assert 'cannot bind: the last words' in str(err.value)
    assert proc.returncode == 3
    assert not in_proc(proc.pid)


def test_wait_until_deadline_names_what_and_log(tmp_path):
    log = str(tmp_path / 'never.log')
    proc = procs.start([sys.executable, '-c', STUBBORN], log)
    try:
        with pytest.raises(RuntimeError) as err:
            procs.wait_until(lambda: False, 'the probe', timeout=0.3, proc=proc, log=log)
        assert str(err.value).startswith('the probe: not within 0.3 s')
    finally:
        procs.stop(proc.pid, signal.SIGKILL)


def test_stop_kills_what_ignores_sigterm(tmp_path):
    log = str(tmp_path / 'stubborn.log')
    proc = procs.start([sys.executable, '-c', STUBBORN], log)
    procs.wait_until(lambda: os.path.getsize(log) > 0, 'SIGTERM handler set', timeout=60, proc=proc, log=log)
    assert procs.stop(proc.pid, timeout=0.5) is True
    assert proc.returncode == -signal.SIGKILL
    assert not in_proc(proc.pid)


def test_stop_group_ends_the_children_too(tmp_path):
    log = str(tmp_path / 'tree.log')
    proc = procs.start(['/bin/sh', '-c', 'sleep 120 & echo $! ; wait'], log)
    procs.wait_until(lambda: os.path.getsize(log) > 0, 'child started', timeout=60, proc=proc, log=log)
    with open(log, encoding='ascii') as handle:
        child = int(handle.read().split()[0])
    assert procs.descendants(proc.pid) == [child]
    procs.stop(proc.pid, group=True)
    assert not in_proc(proc.pid)
    procs.wait_until(lambda: not procs.alive(child), 'the child ended', timeout=30)


def test_stop_signals_nothing_the_check_refuses(tmp_path):
    log = str(tmp_path / 'other.log')
    proc = procs.start([sys.executable, '-c', STUBBORN], log)
    try:
        assert procs.stop(proc.pid, check=lambda pid: procs.cmdline_has(pid, 'not-this-program')) is False
        assert procs.alive(proc.pid)
        assert proc.poll() is None
    finally:
        procs.stop(proc.pid, signal.SIGKILL)
    assert not in_proc(proc.pid)
