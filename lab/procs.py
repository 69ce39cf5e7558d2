"""Process control shared by the lab and the tests' real servers: start, wait until ready, stop by PID.

One copy for lab/build_lab.py (supervisord, the PostgreSQL cluster), lab/ssh_hosts.py (sshd, ssh masters) and
tests/integration/servers.py (the test servers).

    proc = start(['/usr/sbin/thing', '-p', str(port)], log='/tmp/x/thing.log')     detached, its own session
    wait_port(port, proc=proc, log=log)          until 127.0.0.1:port accepts; else RuntimeError with the log's tail
    wait_until(probe, what='...', proc=proc, log=log)     until probe() is true
    stop(proc.pid)                               SIGTERM, wait, SIGKILL, reap (group=True: its process group)

Every PID is checked in /proc before it is signalled again (a zombie counts as ended), and a child of this
process is reaped, so nothing is left behind as a zombie.  Only loopback addresses are ever contacted.
"""
import os
import signal
import socket
import subprocess
import time

_CHILDREN = {}              # PID -> Popen of the processes this process started (reaped when they are stopped)


# ---------------------------------------------------------------- ports

def free_port(host='127.0.0.1'):
    """A TCP port on ``host`` (loopback) that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(port, host='127.0.0.1'):
    """``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def listening(port):
    """127.0.0.1:port is in LISTEN state (read from /proc/net/tcp: no probe connection in the server's log)."""
    wanted = '0100007F:%04X' % port
    try:
        with open('/proc/net/tcp', encoding='ascii') as handle:
            return any(f[1] == wanted and f[3] == '0A' for f in (line.split() for line in handle) if len(f) > 3)
    except OSError:
        return False


# ---------------------------------------------------------------- /proc

def alive(pid):
    """True while ``pid`` runs (a zombie counts as ended)."""
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def cmdline(pid):
    """The command line of ``pid``, arguments joined by spaces ('' when it is gone)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
    except OSError:
        return ''


def cmdline_has(pid, word):
    """``word`` (str or bytes) occurs in the command line of ``pid``."""
    if isinstance(word, bytes):
        word = word.decode('utf-8', 'replace')
    return word in cmdline(pid)


def exe(pid):
    try:
        return os.readlink('/proc/%d/exe' % pid)
    except OSError:
        return ''


def ppid(pid):
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def pids():
    """Every PID in /proc."""
    return [int(name) for name in os.listdir('/proc') if name.isdigit()]


def descendants(pid):
    """The PIDs of every process below ``pid`` (children, their children...)."""
    children = {}
    for other in pids():
        children.setdefault(ppid(other), []).append(other)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def read_pidfile(path):
    """The PID in a PID file, or None when it is missing or holds no number."""
    try:
        with open(path, encoding='ascii') as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def tail(path, lines=30):
    """The last ``lines`` lines of a log, for an error message."""
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError as exc:
        return '(no log: %s)' % exc


# ---------------------------------------------------------------- start and wait

def start(cmd, log, append=False, new_session=True, **popen):
    """Start ``cmd`` detached (stdin from /dev/null, stdout and stderr to ``log``, its own session unless
    ``new_session`` is false); return its Popen.  ``popen``: more Popen keywords (cwd, env, user, group...)."""
    with open(log, 'ab' if append else 'wb') as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True,
            start_new_session=new_session, **popen)
    _CHILDREN[proc.pid] = proc
    return proc


def _ended(proc, pid):
    if proc is not None:
        return proc.poll() is not None
    return pid is not None and not alive(pid)


def wait_until(probe, what, timeout=60.0, proc=None, pid=None, log=None, interval=0.1):
    """Call ``probe()`` until it is true; raise RuntimeError naming ``what``, the deadline and the log's last
    lines when ``timeout`` passes or the process (``proc`` or ``pid``) ends first."""
    deadline = time.monotonic() + timeout
    while True:
        if _ended(proc, pid):
            number = proc.pid if proc is not None else pid
            reap(number)
            raise RuntimeError('%s: the process (PID %d) ended first; %s' % (what, number, _log_words(log)))
        if probe():
            return
        if time.monotonic() >= deadline:
            raise RuntimeError('%s: not within %g s; %s' % (what, timeout, _log_words(log)))
        time.sleep(interval)


def _log_words(log):
    return 'its log %s ends:\n%s' % (log, tail(log)) if log else 'no log'


def wait_port(port, timeout=60.0, host='127.0.0.1', proc=None, log=None, pid=None):
    """Wait until ``host:port`` accepts connections; RuntimeError with the log's last lines when it never does."""
    wait_until(lambda: port_open(port, host), 'server on port %s did not start' % port, timeout=timeout, proc=proc,
               pid=pid, log=log)


# ---------------------------------------------------------------- stop

def reap(pid, block=False):
    """Collect the exit status of ``pid`` when it is a child of this process (no zombie left behind)."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        returncode = proc.wait() if block else proc.poll()
        if returncode is not None:
            del _CHILDREN[pid]
        return
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


def _signal(pid, sig, group):
    """Send ``sig`` to ``pid`` (``group``: to its process group); False when it is already gone."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(pid, sig=signal.SIGTERM, timeout=30.0, group=False, check=None):
    """Stop ``pid``: ``sig``, wait up to ``timeout`` seconds, then SIGKILL, and reap it.

    ``group``: signal its process group (a process started with ``start``, which leads its own session).
    ``check(pid)``: signal only while it is still true (e.g. the command line still names our config).
    Returns True when a signal was sent."""
    return bool(stop_many([pid], sig=sig, timeout=timeout, group=group, check=check))


def stop_many(pid_list, sig=signal.SIGTERM, timeout=30.0, group=False, check=None):
    """``stop`` for several PIDs at once (signal all, wait for all); return the PIDs signalled."""
    check = check or (lambda pid: True)
    signalled = []
    for pid in pid_list:
        if alive(pid) and check(pid) and _signal(pid, sig, group):
            signalled.append(pid)
        else:
            reap(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in signalled):
        for pid in signalled:
            reap(pid)
        time.sleep(0.05)
    for pid in signalled:
        if alive(pid) and check(pid):
            _signal(pid, signal.SIGKILL, group)
    for pid in signalled:
        if pid in _CHILDREN:
            reap(pid, block=True)
        else:
            for dummy in range(200):
                reap(pid)
                if not alive(pid):
                    break
                time.sleep(0.05)
    return signalled
