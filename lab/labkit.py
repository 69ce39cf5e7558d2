"""The parts of a lab site that every product shares: .properties files, installing a release tarball,
supervisord per host, the lab's PostgreSQL cluster, Orthanc's config.

Used by lab/build_lab.py (the generic site builder) and by each product's builder (lab/<product>/build.py).
Processes are started, awaited and stopped by lab/procs.py.
"""
import hashlib
import io
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tarfile

import procs  # pylint: disable=import-error

PYTHON = sys.executable
PG_BINDIR = '/usr/lib/postgresql/15/bin'
PG_OS_USER = 'postgres'         # initdb and postgres refuse to run as root
ORTHANC = '/usr/sbin/Orthanc'
free_port = procs.free_port


class Site:
    """What a product's builder gets while the lab is built: the lab root, the variant, the PostgreSQL cluster
    (``pg``: its state plus ``password``, or None), the releases ({version: tarball}) and ``shared`` (what the
    builder keeps between hosts, e.g. a server's database keys that its clients copy)."""

    def __init__(self, root, rows, db, dicom, pg=None, releases=None):
        self.root = root
        self.rows = rows
        self.db = db
        self.dicom = dicom
        self.pg = pg
        self.releases = releases or {}
        self.shared = {}

    def host_dir(self, name):
        return os.path.join(self.root, 'hosts', name)


# ---------------------------------------------------------------- .properties

def customise(path, changes):
    """Apply site customisations to a .properties file, keeping its comments and order."""
    with open(path, encoding='iso-8859-1') as handle:
        lines = handle.read().splitlines()
    seen = set()
    out = []
    for line in lines:
        key = line.split('=', 1)[0].strip()
        if '=' in line and not line.lstrip().startswith('#') and key in changes:
            out.append('%s=%s' % (key, changes[key]))
            seen.add(key)
        else:
            out.append(line)
    out += ['%s=%s' % (k, v) for k, v in changes.items() if k not in seen]
    with open(path, 'w', encoding='iso-8859-1', newline='\n') as handle:
        handle.write('\n'.join(out) + '\n')


def read_properties(path):
    """The key/value pairs of a .properties file the lab wrote (ISO-8859-1, ``\\uXXXX`` escapes)."""
    values = {}
    with open(path, encoding='iso-8859-1') as handle:
        for raw in handle:
            line = raw.strip()
            if line and line[0] not in '#!' and '=' in line:
                key, value = line.split('=', 1)
                values[key.strip()] = value.strip().encode('latin-1', 'backslashreplace').decode('unicode_escape')
    return values


# ---------------------------------------------------------------- releases

def write_tarball(path, top, files, compresslevel=9):
    """Write ``files`` ({relative path: (bytes, mode)}) under ``top/`` into the tarball ``path`` (temp file, then
    rename) and its ``.sha256``; return ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.PAX_FORMAT, compresslevel=compresslevel) as tar:
        for name in sorted(files):
            data, mode = files[name]
            info = tarfile.TarInfo('%s/%s' % (top, name))
            info.size, info.mode, info.mtime = len(data), mode, 1700000000
            tar.addfile(info, io.BytesIO(data))
    with open(path + '.tmp', 'wb') as handle:
        handle.write(buf.getvalue())
    os.replace(path + '.tmp', path)
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    with open(path + '.sha256', 'w', encoding='ascii') as handle:
        handle.write('%s  %s\n' % (digest, os.path.basename(path)))
    return path


def install(root_dir, top, tarball):
    """Install a release the way the vendor's installer would: unpack ``top/`` of the tarball into ``root_dir``."""
    parent = os.path.dirname(root_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = root_dir + '.installing'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter='data')
    os.replace(os.path.join(tmp, top), root_dir)
    os.rmdir(tmp)


# ---------------------------------------------------------------- supervisord (one per server host)

SUPERVISOR_CONF = '''[unix_http_server]
file={sock}
chmod=0700

[supervisord]
logfile={sup}/supervisord.log
pidfile={sup}/supervisord.pid
childlogdir={logs}
nodaemon=false
silent=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{sock}
'''
PROGRAM = '''
[program:{name}]
command={command}
autostart=true
autorestart=unexpected
startsecs=1
stopwaitsecs=15
stdout_logfile={logs}/{name}.log
redirect_stderr=true
'''


def socket_path(sup):
    """supervisord's socket: in its folder, or under /tmp when that path is too long for AF_UNIX."""
    path = os.path.join(sup, 'supervisor.sock')
    if len(path) > 100:
        path = '/tmp/clinops-sup-%s.sock' % hashlib.sha256(sup.encode()).hexdigest()[:16]
    return path


def supervise(host_base, programs, timeout=30):
    """Write ``host_base/supervisor/supervisord.conf`` with ``programs`` ([(name, command)], logs in
    ``host_base/logs/<name>.log``) and start supervisord (it daemonizes itself; its PID file is the one teardown
    reads); return the config's path."""
    sup = os.path.join(host_base, 'supervisor')
    logs = os.path.join(host_base, 'logs')
    sock = socket_path(sup)
    conf = SUPERVISOR_CONF.format(sup=sup, sock=sock, logs=logs)
    for name, command in programs:
        conf += PROGRAM.format(name=name, command=command, logs=logs)
    path = os.path.join(sup, 'supervisord.conf')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(conf)
    subprocess.run([os.path.join(os.path.dirname(PYTHON), 'supervisord'), '-c', path], check=True)
    log = os.path.join(sup, 'supervisord.log')
    procs.wait_until(lambda: os.path.exists(sock), 'supervisord did not create %s' % sock, timeout=timeout, log=log)
    # Settled: no program still STARTING (or BACKOFF). supervisord logs "entered RUNNING state" startsecs after the
    # start; a lab handed over before that line would change its log under a test that compares the host's files.
    procs.wait_until(lambda: _settled(path), 'the programs of %s did not settle' % path, timeout=timeout, log=log,
                     interval=0.2)
    return path


def _settled(conf):
    """True when supervisord (config ``conf``) reports no program STARTING or BACKOFF."""
    status = subprocess.run([os.path.join(os.path.dirname(PYTHON), 'supervisorctl'), '-c', conf, 'status'],
                            capture_output=True, text=True, check=False)
    states = [line.split()[1] for line in status.stdout.splitlines() if len(line.split()) > 1]
    return bool(states) and not any(state in ('STARTING', 'BACKOFF') for state in states)


def supervisord_pids(root):
    """The PIDs in every ``ROOT/hosts/*/supervisor/supervisord.pid``."""
    found = []
    hosts = os.path.join(root, 'hosts')
    if not os.path.isdir(hosts):
        return found
    for name in sorted(os.listdir(hosts)):
        pid = procs.read_pidfile(os.path.join(hosts, name, 'supervisor', 'supervisord.pid'))
        if pid is not None:
            found.append(pid)
    return found


def stop_supervisords(root):
    """Stop every supervisord of the lab by the PID it wrote (checked in /proc to be a supervisord)."""
    procs.stop_many(supervisord_pids(root), signal.SIGTERM, check=lambda pid: procs.cmdline_has(pid, 'supervisord'))


# ---------------------------------------------------------------- PostgreSQL (--db postgresql)

def missing_prerequisites(db='sqlite', dicom='pynetdicom'):
    """What this machine lacks for the variant ``db``/``dicom``, in words (an empty list when nothing)."""
    missing = []
    if db == 'postgresql':
        for program in ('initdb', 'postgres', 'pg_isready'):
            if not os.path.exists(os.path.join(PG_BINDIR, program)):
                missing.append('--db postgresql needs PostgreSQL 15 (Debian package postgresql-15): no %s/%s' % (PG_BINDIR, program))
        try:
            import psycopg  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        except ImportError:
            missing.append('--db postgresql needs psycopg (3) in %s' % PYTHON)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(PG_OS_USER)
            except KeyError:
                missing.append('--db postgresql as root needs the %s user' % PG_OS_USER)
    if dicom == 'orthanc' and not os.path.exists(ORTHANC):
        missing.append('--dicom orthanc needs Orthanc (Debian package orthanc): no %s' % ORTHANC)
    return missing


def _pg_run_as():
    """runuser arguments and Popen keywords that run a program as the postgres user (when we are root)."""
    if os.geteuid() != 0:
        return [], {}
    return ['runuser', '-u', PG_OS_USER, '--'], dict(user=PG_OS_USER, group=PG_OS_USER, extra_groups=[])


def _chown_to_pg(path):
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(PG_OS_USER)
    for base, dirs, files in os.walk(path):
        for name in [base] + [os.path.join(base, n) for n in dirs + files]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def postgres_state(root):
    """What the lab keeps about its PostgreSQL (PID, port, socket folder, data folder), or None."""
    path = os.path.join(root, 'postgresql', 'lab.json')
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def start_postgres(root, timeout=60):
    """Create and start the lab's own PostgreSQL 15 cluster under ROOT/postgresql; return its state."""
    base = os.path.join(root, 'postgresql')
    os.makedirs(base)
    os.chmod(base, 0o700)
    _chown_to_pg(base)
    runuser, as_user = _pg_run_as()
    if runuser and subprocess.run(runuser + ['test', '-w', base], check=False).returncode != 0:
        raise RuntimeError('the %s user cannot reach %s (PostgreSQL refuses to run as root): every folder above the lab '
                           'must be searchable by others, e.g. --root /tmp/clinops-lab' % (PG_OS_USER, base))
    data = os.path.join(base, 'data')
    init = subprocess.run(runuser + [
        os.path.join(PG_BINDIR, 'initdb'), '-D', data, '-U', 'postgres', '-E', 'UTF8', '--locale=C.UTF-8',
        '--auth-local=trust', '--auth-host=scram-sha-256'], capture_output=True, text=True, check=False)
    if init.returncode != 0:
        raise RuntimeError('initdb failed: %s' % (init.stderr or init.stdout)[-2000:])
    # the socket folder is the lab's; under /tmp only when its path is too long for AF_UNIX
    sockdir = os.path.join(base, 'run')
    if len(os.path.join(sockdir, '.s.PGSQL.65535.lock')) > 100:
        sockdir = '/tmp/clinops-pg-%s' % hashlib.sha256(base.encode()).hexdigest()[:16]
        shutil.rmtree(sockdir, ignore_errors=True)
    os.makedirs(sockdir, mode=0o700)
    _chown_to_pg(sockdir)
    port = free_port()
    log = os.path.join(base, 'server.log')
    with open(log, 'w', encoding='utf-8'):
        pass
    _chown_to_pg(log)
    # started as the postgres user directly (not through runuser): the PID kept is the postmaster's own
    proc = procs.start([
        os.path.join(PG_BINDIR, 'postgres'), '-D', data, '-p', str(port),
        '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=%s' % sockdir,
        '-c', 'fsync=off', '-c', 'max_connections=50'], log, append=True, cwd=base, **as_user)
    state = {'pid': proc.pid, 'port': port, 'host': '127.0.0.1', 'socket_dir': sockdir, 'data': data, 'log': log}
    with open(os.path.join(base, 'lab.json'), 'w', encoding='utf-8') as handle:
        json.dump(state, handle, indent=2)

    def ready():
        return subprocess.run([os.path.join(PG_BINDIR, 'pg_isready'), '-q', '-h', sockdir, '-p', str(port)],
                              check=False).returncode == 0

    procs.wait_until(ready, 'PostgreSQL on port %d did not start' % port, timeout=timeout, proc=proc, log=log,
                     interval=0.2)
    return state


def pg_admin(state, dbname='postgres'):
    """A superuser connection to the lab's cluster (through its socket folder)."""
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=state['socket_dir'], port=state['port'], user='postgres', dbname=dbname, autocommit=True)


def stop_postgres(root):
    """Stop the lab's PostgreSQL by the PID the lab kept (fast shutdown) and remove its socket folder."""
    state = postgres_state(root)
    if state is None:
        return
    procs.stop(state['pid'], signal.SIGINT, check=lambda pid: procs.cmdline_has(pid, state['data']))
    if not state['socket_dir'].startswith(os.path.join(root, 'postgresql') + os.sep):
        shutil.rmtree(state['socket_dir'], ignore_errors=True)


# ---------------------------------------------------------------- Orthanc (--dicom orthanc)

def write_orthanc_config(host_base, aet, port, title):
    """Orthanc's JSON config (AE title, DICOM port, called AE title checked, HTTP off), storage in the host's
    folder; return its path."""
    home = os.path.join(host_base, 'orthanc')
    for sub in ('storage', 'tmp'):
        os.makedirs(os.path.join(home, sub))
    config = {
        'Name': title,
        'StorageDirectory': os.path.join(home, 'storage'),
        'IndexDirectory': os.path.join(home, 'storage'),
        'TemporaryDirectory': os.path.join(home, 'tmp'),
        'DicomServerEnabled': True,
        'DicomAet': aet,
        'DicomPort': int(port),
        'DicomCheckCalledAet': True,
        'DicomAlwaysAllowEcho': True,
        'DicomCheckModalityHost': False,
        'DicomModalities': {},
        'HttpServerEnabled': False,     # Orthanc cannot bind its HTTP server to 127.0.0.1 only: off
        'RemoteAccessAllowed': False,
        'Plugins': [],
        'LuaScripts': [],
        'ConcurrentJobs': 1,
    }
    path = os.path.join(home, 'orthanc.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(config, handle, indent=2)
        handle.write('\n')
    return path
