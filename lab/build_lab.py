#!/usr/bin/env python
"""Build a PMOD-like site on this machine from nothing, for the demo, the tests and the benchmark.

    build_lab.py [--root DIR] [--clients N] [--servers N]     build (or rebuild) the lab
                 [--db sqlite|postgresql] [--dicom pynetdicom|orthanc]
    build_lab.py --root DIR --teardown                        stop its processes (by PID) and delete it
    build_lab.py --root DIR --broken-migration                rebuild the new release with a failing migration

What is real and what is a stand-in:
  * stand-ins: the "PMOD" product itself (small Python programs for the transaction server, the license
    server and the DICOM server, a control tool with "Echo TS"/"Echo DB"), its release tarballs, its
    properties files and its SQL migrations;
  * real: supervisord (from PyPI) running the services, pynetdicom answering C-ECHO, SQLite holding a
    few thousand rows, ISO-8859-1 .properties files with site customisations, sha256 checksums.

Variants (the defaults need only Python packages):
  * ``--db postgresql``: the lab starts its own PostgreSQL 15 cluster (Debian's binaries, run as the
    ``postgres`` user) on a free port of 127.0.0.1, with one database per server owned by the role
    ``pmod`` (password auth over TCP), holding the same rows; the transaction server's "Echo DB" asks
    PostgreSQL (psycopg) and the inventory carries ``pmod_db_*`` for the profile's database connection.
    The migrations are written in SQL that both engines run.
  * ``--dicom orthanc``: the supervisor program ``pmod-ds`` runs Debian's ``Orthanc`` with a JSON config
    written from the site's Dicom.properties (AE title, DICOM port, called AE title checked, HTTP off),
    its storage in the host's folder.  Orthanc answers the C-ECHO instead of the stand-in.

Layout under ROOT:
  releases/pmod-<version>.tar.gz (+ .sha256)      the two release artifacts (OLD_VERSION, NEW_VERSION)
  hosts/<host>/opt/PMOD                           each host's installation (installed from OLD_VERSION)
  hosts/<host>/data/pmod.db                       the server's database, outside the installation (sqlite)
  hosts/<host>/{backups,state,logs,supervisor}    backups, journal and lock, logs, supervisord
  hosts/<host>/orthanc/{orthanc.json,storage}     Orthanc's config and storage (--dicom orthanc)
  postgresql/{data,run,server.log,lab.json}       the PostgreSQL cluster, its socket folder, log, PID (--db postgresql)
  inventory/hosts.yml                             the Ansible inventory (local connection)
"""
import argparse
import hashlib
import io
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_ROOT = os.environ.get('CLINOPS_LAB', '/tmp/clinops-lab')
OLD_VERSION = '4.3.0'
NEW_VERSION = '4.4.0'
PYTHON = sys.executable
DB_ENGINES = ('sqlite', 'postgresql')
DICOM_SERVERS = ('pynetdicom', 'orthanc')
PG_BINDIR = '/usr/lib/postgresql/15/bin'
PG_OS_USER = 'postgres'         # initdb and postgres refuse to run as root
PG_ROLE = 'pmod'                # the product's database role (owns the databases, may create the restore's scratch one)
ORTHANC = '/usr/sbin/Orthanc'
MARKER = '.clinops-lab'          # written first: teardown deletes only folders that have it (or an inventory)

# ---------------------------------------------------------------- the stand-in product's programs

COMMON = r'''
import os, sys


def read_properties(path):
    """Java-style .properties (ISO-8859-1, \\uXXXX escapes, # and ! comments)."""
    values = {}
    with open(path, encoding='iso-8859-1') as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line[0] in '#!':
                continue
            for sep in ('=', ':'):
                if sep in line:
                    key, value = line.split(sep, 1)
                    break
            else:
                key, value = line, ''
            values[key.strip()] = value.strip().encode('latin-1', 'backslashreplace').decode('unicode_escape')
    return values


def arg(name, default=None):
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default
'''

TS = COMMON + r'''
import socketserver, sqlite3, threading
VERSION = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'VERSION')).read().strip()
REQUIRED_SCHEMA = '@REQUIRED_SCHEMA@'
props = read_properties(arg('--properties'))
CLIENTS = {'n': 0}


def blocks(v):
    return tuple(int(x) for x in v.split('.'))


def echo_db():
    if props.get('db.engine', 'sqlite') == 'postgresql':
        return echo_postgresql()
    path = props['db.path']
    if not os.path.isabs(path):
        return 'ERR database path %s is not absolute' % path
    if not os.path.exists(path):
        return 'ERR database %s missing' % path
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute('SELECT version FROM pmod_schema').fetchone()[0]
        if blocks(schema) < blocks(REQUIRED_SCHEMA):
            return 'ERR schema %s older than required %s' % (schema, REQUIRED_SCHEMA)
        studies = conn.execute('SELECT count(*) FROM studies').fetchone()[0]
        return 'OK schema=%s studies=%d' % (schema, studies)
    except sqlite3.Error as exc:
        return 'ERR %s' % exc
    finally:
        conn.close()


def echo_postgresql():
    import psycopg
    try:
        with psycopg.connect(host=props['db.host'], port=int(props['db.port']), dbname=props['db.name'],
                             user=props['db.user'], password=props.get('db.password', ''), connect_timeout=5,
                             application_name='pmod-ts') as conn:
            schema = conn.execute('SELECT version FROM pmod_schema').fetchone()[0]
            if blocks(schema) < blocks(REQUIRED_SCHEMA):
                return 'ERR schema %s older than required %s' % (schema, REQUIRED_SCHEMA)
            studies = conn.execute('SELECT count(*) FROM studies').fetchone()[0]
            return 'OK schema=%s studies=%d' % (schema, studies)
    except (psycopg.Error, KeyError, ValueError) as exc:
        return 'ERR %s' % str(exc).strip().replace('\n', ' ')


def database_name():
    if props.get('db.engine', 'sqlite') == 'postgresql':
        return 'postgresql://%s@%s:%s/%s' % (props.get('db.user'), props.get('db.host'), props.get('db.port'), props.get('db.name'))
    return props['db.path']


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().strip().upper()
        if line == 'ECHO':
            answer = 'OK PMOD-TS %s site=%s' % (VERSION, props.get('site.name', ''))
        elif line == 'ECHODB':
            answer = echo_db()
        elif line == 'USERS':
            answer = str(CLIENTS['n'])
        elif line == 'VERSION':
            answer = VERSION
        else:
            answer = 'ERR unknown command'
        self.wfile.write((answer + '\n').encode('utf-8'))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


print('PMOD transaction server %s on port %s, database %s' % (VERSION, props['ts.port'], database_name()), flush=True)
Server(('127.0.0.1', int(props['ts.port'])), Handler).serve_forever()
'''

LS = COMMON + r'''
import socketserver
VERSION = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'VERSION')).read().strip()
props = read_properties(arg('--properties'))


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(('OK PMOD-LS %s seats=%s\n' % (VERSION, props.get('license.seats', '5'))).encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


print('PMOD license server %s on port %s' % (VERSION, props['ls.port']), flush=True)
Server(('127.0.0.1', int(props['ls.port'])), Handler).serve_forever()
'''

DS = COMMON + r'''
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
VERSION = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'VERSION')).read().strip()
props = read_properties(arg('--properties'))
ae = AE(ae_title=props['dicom.aet'])
ae.add_supported_context(Verification)
ae.require_called_aet = True
# Like a real DICOM node: few association slots, and a connection that has not sent its A-ASSOCIATE-RQ yet holds
# one until the ACSE timeout; more associations are rejected-transient (local limit exceeded).
ae.maximum_associations = int(props.get('dicom.max_associations', '4'))
ae.acse_timeout = float(props.get('dicom.acse_timeout', '30'))
ae.network_timeout = float(props.get('dicom.network_timeout', '60'))
print('PMOD DICOM server %s, AE %s on port %s' % (VERSION, props['dicom.aet'], props['dicom.port']), flush=True)
ae.start_server(('127.0.0.1', int(props['dicom.port'])), block=True,
                evt_handlers=[(evt.EVT_C_ECHO, lambda event: 0x0000)])
'''

CTL = COMMON + r'''
import socket


def ask(port, command, host='127.0.0.1'):
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall((command + '\n').encode())
        return sock.makefile().readline().strip()


def main():
    what = sys.argv[1]
    props = read_properties(arg('--properties'))
    host = arg('--host', '127.0.0.1')
    try:
        if what == 'echo-ts':
            answer = ask(props['ts.port'], 'ECHO', host)
        elif what == 'echo-db':
            answer = ask(props['ts.port'], 'ECHODB', host)
        elif what == 'echo-ls':
            answer = ask(props['ls.port'], 'LICENSE', host)
        elif what == 'users':
            answer = ask(props['ts.port'], 'USERS', host)
            print(answer)
            return 0
        else:
            print('usage: pmodctl.py echo-ts|echo-db|echo-ls|users --properties FILE')
            return 2
    except OSError as exc:
        print('ERR %s' % exc)
        return 1
    print(answer)
    return 0 if answer.startswith('OK') else 1


sys.exit(main())
'''

# ---------------------------------------------------------------- releases

DEFAULT_PROPERTIES = {
    OLD_VERSION: [
        '# PMOD configuration (defaults of release @V@)',
        'site.name=PMOD Site',
        'ts.port=7100',
        'ts.timeout=30',
        'ls.port=7200',
        'license.mode=network',
        'license.seats=5',
        'db.path=data/pmod.db',
        'legacy.viewer=true',
        'ui.language=en',
    ],
    NEW_VERSION: [
        '# PMOD configuration (defaults of release @V@)',
        'site.name=PMOD Site',
        'ts.port=7100',
        'ts.timeout=60',
        'ts.max_connections=64',
        'ls.port=7200',
        'license.mode=network',
        'license.seats=5',
        'db.path=data/pmod.db',
        'ui.language=en',
        'ui.theme=dark',
    ],
}
DICOM_PROPERTIES = {
    OLD_VERSION: ['# PMOD DICOM server (defaults of release @V@)', 'dicom.aet=PMOD_DS', 'dicom.port=104'],
    NEW_VERSION: ['# PMOD DICOM server (defaults of release @V@)', 'dicom.aet=PMOD_DS', 'dicom.port=104',
                  'dicom.max_pdu=65536'],
}

BASELINE_SQL = '''-- phase: offline
-- PMOD 4.3.0 baseline schema
CREATE TABLE pmod_schema (version TEXT NOT NULL);
INSERT INTO pmod_schema VALUES ('4.3.0');
CREATE TABLE patients (id INTEGER PRIMARY KEY, patient_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, birth_date TEXT);
CREATE TABLE studies (id INTEGER PRIMARY KEY, patient INTEGER NOT NULL REFERENCES patients(id),
                      uid TEXT NOT NULL UNIQUE, description TEXT, study_date TEXT);
CREATE TABLE series (id INTEGER PRIMARY KEY, study INTEGER NOT NULL REFERENCES studies(id),
                     uid TEXT NOT NULL UNIQUE, modality TEXT, images INTEGER);
CREATE TABLE legacy_notes (id INTEGER PRIMARY KEY, note TEXT);
'''

MIGRATIONS = {
    OLD_VERSION: {'V4.3.0__baseline.sql': BASELINE_SQL},
    NEW_VERSION: {
        'V4.3.0__baseline.sql': BASELINE_SQL,
        'V4.3.1__series_modality_index.sql': '''-- phase: pre
-- expand: an index the old version does not mind, built before the stop
CREATE INDEX IF NOT EXISTS series_modality ON series (modality);
''',
        'V4.3.2__study_status.sql': '''-- phase: offline
-- needs the downtime: 4.4.0 reads studies.status
ALTER TABLE studies ADD COLUMN status TEXT NOT NULL DEFAULT 'archived';
UPDATE studies SET status = 'new' WHERE study_date >= '2024-01-01';
UPDATE pmod_schema SET version = '4.3.2';
''',
        'V4.4.0__drop_legacy_notes.sql': '''-- phase: post
-- contract: 4.4.0 no longer reads legacy_notes
DROP TABLE IF EXISTS legacy_notes;
UPDATE pmod_schema SET version = '4.4.0';
''',
    },
}
BROKEN_SQL = '''-- phase: offline
-- deliberately broken for the rollback test
ALTER TABLE studies ADD COLUMN status TEXT NOT NULL DEFAULT 'archived';
UPDATE studies SET no_such_column = 1;
UPDATE pmod_schema SET version = '4.3.2';
'''
REQUIRED_SCHEMA = {OLD_VERSION: '4.3.0', NEW_VERSION: '4.3.2'}


def _properties_bytes(lines, version):
    text = '\n'.join(line.replace('@V@', version) for line in lines) + '\n'
    return text.encode('iso-8859-1')


def payload_files(version, payload_mb):
    """``payload_mb`` MB of incompressible stand-in libraries (a real release carries its Java runtime and jars)."""
    files = {}
    rng = random.Random('payload-%s' % version)
    chunk = 16
    for index in range((payload_mb + chunk - 1) // chunk):
        size = min(chunk, payload_mb - index * chunk) * 1024 * 1024
        files['lib/runtime-%03d.jar' % index] = (rng.randbytes(size), 0o644)
    return files


def release_files(version, broken=False, payload_mb=0):
    """{relative path: (bytes, mode)} of the release tree."""
    files = {
        'VERSION': (('%s\n' % version).encode(), 0o644),
        'bin/pmod_ts.py': (TS.replace('@REQUIRED_SCHEMA@', REQUIRED_SCHEMA[version]).encode(), 0o755),
        'bin/pmod_ls.py': (LS.encode(), 0o755),
        'bin/pmod_ds.py': (DS.encode(), 0o755),
        'bin/pmodctl.py': (CTL.encode(), 0o755),
        'properties/Config.properties': (_properties_bytes(DEFAULT_PROPERTIES[version], version), 0o644),
        'properties/Dicom.properties': (_properties_bytes(DICOM_PROPERTIES[version], version), 0o644),
        'doc/README.txt': (('PMOD stand-in release %s for the clinops.upgrade lab.\n' % version).encode(), 0o644),
    }
    for name, sql in MIGRATIONS[version].items():
        if broken and name.startswith('V4.3.2'):
            sql = BROKEN_SQL
        files['sql/' + name] = (sql.encode(), 0o644)
    files.update(payload_files(version, payload_mb))
    return files


def make_release(root, version, broken=False, payload_mb=0):
    """Write releases/pmod-<version>.tar.gz and its .sha256; return the tarball path.

    ``payload_mb``: add that many MB of stand-in libraries (the benchmark's realistic release size)."""
    rel = os.path.join(root, 'releases')
    os.makedirs(rel, exist_ok=True)
    path = os.path.join(rel, 'pmod-%s.tar.gz' % version)
    top = 'pmod-%s' % version
    buf = io.BytesIO()
    files = release_files(version, broken, payload_mb)
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.PAX_FORMAT, compresslevel=6 if payload_mb else 9) as tar:
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


# ---------------------------------------------------------------- hosts

def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def install(root_dir, version, tarball):
    """Install a release the way the vendor's installer would: unpack into the installation folder."""
    parent = os.path.dirname(root_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = root_dir + '.installing'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp, filter='data')
    os.replace(os.path.join(tmp, 'pmod-%s' % version), root_dir)
    os.rmdir(tmp)


def write_start_script(install_root, name, program, properties):
    path = os.path.join(install_root, 'bin', 'start-%s.sh' % name)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\n# generated by the PMOD installer\ncd "%s" || exit 1\nexec "%s" "%s/bin/%s" --properties "%s/%s"\n'
                     % (install_root, PYTHON, install_root, program, install_root, properties))
    os.chmod(path, 0o755)


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


def sample_rows(rows=3000, seed=7):
    """The product tables' rows, the same for every engine: {table: [row tuple, ...]} in insertion order."""
    rng = random.Random(seed)
    patients = rows // 6
    data = {}
    data['patients'] = [
        (i, 'P%06d' % i, rng.choice(['Müller', 'Meier', 'Schmid', 'Keller', 'Weber']) + '^' + rng.choice(['Anna', 'Jürg', 'Petra', 'Luca']),
         '19%02d-%02d-%02d' % (rng.randint(30, 99), rng.randint(1, 12), rng.randint(1, 28))) for i in range(1, patients + 1)]
    data['studies'] = [
        (i, rng.randint(1, patients), '1.2.826.0.1.3680043.9.7.%d' % i, rng.choice(['PET/CT brain', 'FDG whole body', 'MR knee']),
         '20%02d-%02d-%02d' % (rng.randint(18, 25), rng.randint(1, 12), rng.randint(1, 28))) for i in range(1, rows // 2 + 1)]
    data['series'] = [
        (i, rng.randint(1, rows // 2), '1.2.826.0.1.3680043.9.8.%d' % i, rng.choice(['PT', 'CT', 'MR']), rng.randint(1, 600))
        for i in range(1, rows + 1)]
    data['legacy_notes'] = [(i, 'note %d' % i) for i in range(1, 51)]
    return data


def make_database(path, rows=3000, seed=7):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    conn = sqlite3.connect(path)
    conn.executescript(BASELINE_SQL)
    for table, values in sample_rows(rows, seed).items():
        conn.executemany('INSERT INTO %s VALUES (%s)' % (table, ', '.join('?' * len(values[0]))), values)
    conn.commit()
    conn.close()


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


_CHILDREN = {}              # PID -> Popen of the servers this process started (reaped when they are stopped)


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


def _log_tail(path, limit=3000):
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()[-limit:]
    except OSError:
        return ''


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
    with open(log, 'w', encoding='utf-8') as handle:
        _chown_to_pg(log)
        # started as the postgres user directly (not through runuser): the PID kept is the postmaster's own
        proc = subprocess.Popen([
            os.path.join(PG_BINDIR, 'postgres'), '-D', data, '-p', str(port),
            '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=%s' % sockdir,
            '-c', 'fsync=off', '-c', 'max_connections=50'],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base, start_new_session=True, **as_user)
    _CHILDREN[proc.pid] = proc
    state = {'pid': proc.pid, 'port': port, 'host': '127.0.0.1', 'socket_dir': sockdir, 'data': data, 'log': log}
    with open(os.path.join(base, 'lab.json'), 'w', encoding='utf-8') as handle:
        json.dump(state, handle, indent=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        ready = subprocess.run([os.path.join(PG_BINDIR, 'pg_isready'), '-q', '-h', sockdir, '-p', str(port)], check=False)
        if ready.returncode == 0:
            return state
        time.sleep(0.2)
    raise RuntimeError('PostgreSQL on port %d did not start: %s' % (port, _log_tail(log)))


def _pg_admin(state, dbname='postgres'):
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=state['socket_dir'], port=state['port'], user='postgres', dbname=dbname, autocommit=True)


def make_pg_database(state, name, password, rows=3000, seed=7):
    """Create database ``name`` owned by the product's role (created with ``password`` if missing) and load the rows.

    The rows are loaded as that role over TCP with its password, the way the product connects.
    """
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    with _pg_admin(state) as conn:
        if conn.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (PG_ROLE,)).fetchone() is None:
            # CREATEDB: db_backup restores into a scratch database and renames it over this one
            conn.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEDB PASSWORD {}').format(sql.Identifier(PG_ROLE), sql.Literal(password)))
        conn.execute(sql.SQL('CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {}').format(
            sql.Identifier(name), sql.Identifier(PG_ROLE), sql.Literal('UTF8')))
    with psycopg.connect(host=state['host'], port=state['port'], user=PG_ROLE, password=password, dbname=name) as conn:
        conn.execute(BASELINE_SQL)
        with conn.cursor() as cur:
            for table, values in sample_rows(rows, seed).items():
                with cur.copy(sql.SQL('COPY {} FROM STDIN').format(sql.Identifier(table))) as copy:
                    for row in values:
                        copy.write_row(row)


def stop_postgres(root):
    """Stop the lab's PostgreSQL by the PID the lab kept (fast shutdown) and remove its socket folder."""
    state = postgres_state(root)
    if state is None:
        return
    pid = state['pid']
    if _cmdline_has(pid, state['data'].encode()):
        _stop_pid(pid, signal.SIGINT)
    _reap(pid)
    if not state['socket_dir'].startswith(os.path.join(root, 'postgresql') + os.sep):
        shutil.rmtree(state['socket_dir'], ignore_errors=True)


# ---------------------------------------------------------------- Orthanc (--dicom orthanc)

def write_orthanc_config(host_base, dicom_properties, name):
    """Orthanc's JSON config from the site's Dicom.properties (AE title, port); storage in the host's folder."""
    props = read_properties(dicom_properties)
    home = os.path.join(host_base, 'orthanc')
    for sub in ('storage', 'tmp'):
        os.makedirs(os.path.join(home, sub))
    config = {
        'Name': 'PMOD DICOM node of %s' % name,
        'StorageDirectory': os.path.join(home, 'storage'),
        'IndexDirectory': os.path.join(home, 'storage'),
        'TemporaryDirectory': os.path.join(home, 'tmp'),
        'DicomServerEnabled': True,
        'DicomAet': props['dicom.aet'],
        'DicomPort': int(props['dicom.port']),
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
SERVICES = (('pmod-ls', 'ls', 'pmod_ls.py', 'properties/Config.properties'),
            ('pmod-ts', 'ts', 'pmod_ts.py', 'properties/Config.properties'),
            ('pmod-ds', 'ds', 'pmod_ds.py', 'properties/Dicom.properties'))


def socket_path(sup):
    """supervisord's socket: in its folder, or under /tmp when that path is too long for AF_UNIX."""
    path = os.path.join(sup, 'supervisor.sock')
    if len(path) > 100:
        path = '/tmp/clinops-sup-%s.sock' % hashlib.sha256(sup.encode()).hexdigest()[:16]
    return path


def start_supervisord(conf, sockpath, timeout=30):
    subprocess.run([os.path.join(os.path.dirname(PYTHON), 'supervisord'), '-c', conf], check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(sockpath):
            return
        time.sleep(0.1)
    raise RuntimeError('supervisord did not create %s' % sockpath)


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('port %d did not open' % port)


def build(root=DEFAULT_ROOT, clients=3, servers=1, rows=3000, quiet=False, db='sqlite', dicom='pynetdicom', payload_mb=0,
          ssh=False):
    """Build the whole lab under ``root`` (tearing down an older one first); return the inventory path.

    ``db``: ``sqlite`` (a file per server) or ``postgresql`` (the lab's own PostgreSQL 15 cluster, a database
    per server).  ``dicom``: ``pynetdicom`` (the stand-in DICOM server) or ``orthanc`` (Debian's Orthanc).
    ``payload_mb``: MB of stand-in libraries in each release (0: a few KB).  ``ssh``: reach every host over SSH, each
    through its own sshd in its own mount namespace (lab/ssh_hosts.py); the inventory returned is then that one.
    When the build fails, what it started is stopped again (the folder is kept for its logs).
    """
    if db not in DB_ENGINES:
        raise ValueError('db must be one of %s, not %r' % (', '.join(DB_ENGINES), db))
    if dicom not in DICOM_SERVERS:
        raise ValueError('dicom must be one of %s, not %r' % (', '.join(DICOM_SERVERS), dicom))
    missing = missing_prerequisites(db, dicom)
    if missing:
        raise RuntimeError('; '.join(missing))
    root = os.path.abspath(root)
    teardown(root, quiet=True)
    os.makedirs(root)
    with open(os.path.join(root, MARKER), 'w', encoding='utf-8') as handle:
        handle.write('a lab of lab/build_lab.py: build_lab.py --root %s --teardown stops it and deletes this folder\n' % root)
    try:
        inv = _build(root, clients, servers, rows, db, dicom, payload_mb)
        if ssh:
            inv = _ssh_hosts().enable(root, inv)
    except BaseException:
        teardown(root, quiet=True, remove=False)
        raise
    if not quiet:
        variant = '' if (db, dicom) == (DB_ENGINES[0], DICOM_SERVERS[0]) else ' (database %s, DICOM server %s)' % (db, dicom)
        print('lab built under %s: %d server(s), %d client(s), PMOD %s installed, %s staged as a release%s'
              % (root, servers, clients, OLD_VERSION, NEW_VERSION, variant))
    return inv


def _server_database(base, name, index, rows, db, pg):
    """Create a server's database; return (its keys in Config.properties, its inventory variables)."""
    if db == 'postgresql':
        database = 'pmod_%s' % name
        make_pg_database(pg, database, pg['password'], rows=rows, seed=7 + index)
        props = {'db.engine': 'postgresql', 'db.host': pg['host'], 'db.port': pg['port'], 'db.name': database,
                 'db.user': PG_ROLE, 'db.password': pg['password']}
        # the profile's database.connection (profiles/pmod.yml) reads these
        return props, {'pmod_db_engine': 'postgresql', 'pmod_db_name': database, 'pmod_db_host': pg['host'],
                       'pmod_db_port': pg['port'], 'pmod_db_user': PG_ROLE, 'pmod_db_password': pg['password']}
    path = os.path.join(base, 'data', 'pmod.db')
    make_database(path, rows=rows, seed=7 + index)
    return {'db.path': path}, {'upgrade_db_path': path}


def _build(root, clients, servers, rows, db, dicom, payload_mb=0):
    old = make_release(root, OLD_VERSION, payload_mb=payload_mb)
    make_release(root, NEW_VERSION, payload_mb=payload_mb)
    inventory = {'all': {'vars': {
        'ansible_connection': 'local',
        'ansible_python_interpreter': PYTHON,
        'upgrade_profile': 'pmod',
        'upgrade_site': 'lab',
        'upgrade_target_version': NEW_VERSION,
        'upgrade_artifact_dir': os.path.join(root, 'releases'),
        'upgrade_python': PYTHON,
        'upgrade_report_dir': os.path.join(root, 'reports'),
        'upgrade_install_root': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/opt/PMOD',
        'upgrade_state_dir': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/state',
        'upgrade_backup_dir': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/backups',
        'upgrade_lab_hosts': os.path.join(root, 'hosts'),
    }, 'children': {'servers': {'hosts': {}}, 'clients': {'hosts': {}}}}}
    pg = None
    if db == 'postgresql':
        pg = dict(start_postgres(root), password=secrets.token_urlsafe(18))
    server_names = ['server%d' % i for i in range(1, servers + 1)]
    server_db_props = {}
    for index, name in enumerate(server_names):
        base = os.path.join(root, 'hosts', name)
        inst = os.path.join(base, 'opt', 'PMOD')
        for sub in ('backups', 'state', 'logs', 'supervisor'):
            os.makedirs(os.path.join(base, sub))
        install(inst, OLD_VERSION, old)
        db_props, db_vars = _server_database(base, name, index, rows, db, pg)
        server_db_props[name] = db_props
        ports = {'ts': free_port(), 'ls': free_port(), 'dicom': free_port()}
        aet = 'PMOD_DS%d' % (index + 1)
        customise(os.path.join(inst, 'properties', 'Config.properties'), {
            'site.name': 'Universitätsspital Zürich – Nuklearmedizin'.replace('–', '\\u2013'),
            'ts.port': ports['ts'], 'ls.port': ports['ls'], **db_props, 'license.seats': 25,
            'site.contact': 'pacs-admin@example.invalid'})
        customise(os.path.join(inst, 'properties', 'Dicom.properties'), {'dicom.aet': aet, 'dicom.port': ports['dicom']})
        sup = os.path.join(base, 'supervisor')
        sock = socket_path(sup)
        conf = SUPERVISOR_CONF.format(sup=sup, sock=sock, logs=os.path.join(base, 'logs'))
        for svc, short, program, props in SERVICES:
            write_start_script(inst, short, program, props)
            command = '%s/bin/start-%s.sh' % (inst, short)
            if svc == 'pmod-ds' and dicom == 'orthanc':
                # the site's DICOM node is Orthanc: not part of the installation, so the upgrade stops and starts it
                command = '%s %s' % (ORTHANC, write_orthanc_config(base, os.path.join(inst, props), name))
            conf += PROGRAM.format(name=svc, command=command, logs=os.path.join(base, 'logs'))
        with open(os.path.join(sup, 'supervisord.conf'), 'w', encoding='utf-8') as handle:
            handle.write(conf)
        start_supervisord(os.path.join(sup, 'supervisord.conf'), sock)
        for port in ports.values():
            wait_port(port)
        inventory['all']['children']['servers']['hosts'][name] = dict(db_vars, **{
            'upgrade_supervisor_config': os.path.join(sup, 'supervisord.conf'),
            'pmod_ports': ports,
            'pmod_dicom_aet': aet,
        })
    for i in range(1, clients + 1):
        name = 'client%d' % i
        base = os.path.join(root, 'hosts', name)
        server = server_names[(i - 1) % len(server_names)]
        sv = inventory['all']['children']['servers']['hosts'][server]
        os.makedirs(os.path.join(base, 'state'))
        inst = os.path.join(base, 'opt', 'PMOD')
        install(inst, OLD_VERSION, old)
        customise(os.path.join(inst, 'properties', 'Config.properties'), {
            'ts.port': sv['pmod_ports']['ts'], 'ls.port': sv['pmod_ports']['ls'], 'ts.host': '127.0.0.1',
            'ui.language': random.Random(i).choice(['de', 'fr', 'it']), **server_db_props[server]})
        customise(os.path.join(inst, 'properties', 'Dicom.properties'), {
            'dicom.aet': 'PMOD_WS%d' % i, 'dicom.port': sv['pmod_ports']['dicom']})
        inventory['all']['children']['clients']['hosts'][name] = {'upgrade_server': server}
    inv_dir = os.path.join(root, 'inventory')
    os.makedirs(inv_dir)
    inv = os.path.join(inv_dir, 'hosts.yml')
    with open(inv, 'w', encoding='utf-8') as handle:
        handle.write('# generated by lab/build_lab.py\n')
        json.dump(inventory, handle, indent=2)
        handle.write('\n')
    return inv


def supervisord_pids(root):
    pids = []
    hosts = os.path.join(root, 'hosts')
    if not os.path.isdir(hosts):
        return pids
    for name in sorted(os.listdir(hosts)):
        pidfile = os.path.join(hosts, name, 'supervisor', 'supervisord.pid')
        if os.path.exists(pidfile):
            with open(pidfile, encoding='ascii') as handle:
                text = handle.read().strip()
            if text.isdigit():
                pids.append(int(text))
    return pids


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
            return handle.read().split(') ')[-1][0] != 'Z'
    except OSError:
        return False


def _cmdline_has(pid, word):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return word in handle.read()
    except OSError:
        return False


def _is_supervisord(pid):
    return _cmdline_has(pid, b'supervisord')


def _reap(pid):
    """Collect the exit status of a server this process started (no zombie left behind)."""
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait()


def _stop_pid(pid, sig=signal.SIGTERM, timeout=30):
    """Signal ``pid`` and wait until it is gone; SIGKILL it after ``timeout`` seconds."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def lab_pids(root):
    """The PIDs the lab keeps: every supervisord and the PostgreSQL postmaster (whether alive or not)."""
    state = postgres_state(os.path.abspath(root))
    return supervisord_pids(os.path.abspath(root)) + ([state['pid']] if state else [])


def _ssh_hosts():
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import ssh_hosts  # pylint: disable=import-outside-toplevel,import-error
    return ssh_hosts


def teardown(root=DEFAULT_ROOT, quiet=False, remove=True):
    """Stop the lab's sshd, every supervisord and its PostgreSQL (by the PIDs it keeps) and delete the lab folder."""
    root = os.path.abspath(root)
    if os.path.isdir(os.path.join(root, 'ssh')):
        _ssh_hosts().disable(root)
    for pid in supervisord_pids(root):
        if _is_supervisord(pid):
            _stop_pid(pid, signal.SIGTERM)
    stop_postgres(root)       # after the services, which are its clients
    if remove and os.path.isdir(root):
        if not any(os.path.exists(os.path.join(root, p)) for p in (MARKER, 'inventory/hosts.yml')) and os.listdir(root):
            raise SystemExit('%s does not look like a lab folder; not deleting it' % root)
        shutil.rmtree(root)
    if not quiet:
        print('lab under %s torn down' % root)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=DEFAULT_ROOT)
    parser.add_argument('--clients', type=int, default=3)
    parser.add_argument('--servers', type=int, default=1)
    parser.add_argument('--rows', type=int, default=3000)
    parser.add_argument('--db', choices=DB_ENGINES, default=DB_ENGINES[0],
                        help="the servers' database: a SQLite file, or the lab's own PostgreSQL 15 (default: %(default)s)")
    parser.add_argument('--dicom', choices=DICOM_SERVERS, default=DICOM_SERVERS[0],
                        help="the servers' DICOM node: the stand-in, or Debian's Orthanc (default: %(default)s)")
    parser.add_argument('--payload-mb', type=int, default=0,
                        help='MB of stand-in libraries in each release, for a realistic release size (default: 0)')
    parser.add_argument('--ssh', action='store_true',
                        help='reach every host over SSH, each sshd in its own mount namespace; prints that inventory')
    parser.add_argument('--teardown', action='store_true')
    parser.add_argument('--broken-migration', action='store_true',
                        help='rebuild the %s release with a migration that fails' % NEW_VERSION)
    args = parser.parse_args(argv)
    if args.teardown:
        teardown(args.root)
    elif args.broken_migration:
        print(make_release(os.path.abspath(args.root), NEW_VERSION, broken=True))
    else:
        try:
            inventory = build(args.root, clients=args.clients, servers=args.servers, rows=args.rows, db=args.db,
                              dicom=args.dicom, payload_mb=args.payload_mb, ssh=args.ssh)
        except RuntimeError as exc:
            print('build_lab.py: the lab was not built: %s' % exc, file=sys.stderr)
            return 1
        print(inventory)
    return 0


if __name__ == '__main__':
    sys.exit(main())
