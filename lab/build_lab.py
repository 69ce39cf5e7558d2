#!/usr/bin/env python
"""Build a PMOD-like site on this machine from nothing, for the demo, the tests and the benchmark.

    build_lab.py [--root DIR] [--clients N] [--servers N]     build (or rebuild) the lab
    build_lab.py --root DIR --teardown                        stop its supervisord (by PID) and delete it
    build_lab.py --root DIR --broken-migration                rebuild the new release with a failing migration

What is real and what is a stand-in:
  * stand-ins: the "PMOD" product itself (small Python programs for the transaction server, the license
    server and the DICOM server, a control tool with "Echo TS"/"Echo DB"), its release tarballs, its
    properties files and its SQL migrations;
  * real: supervisord (from PyPI) running the services, pynetdicom answering C-ECHO, SQLite holding a
    few thousand rows, ISO-8859-1 .properties files with site customisations, sha256 checksums.

Layout under ROOT:
  releases/pmod-<version>.tar.gz (+ .sha256)      the two release artifacts (OLD_VERSION, NEW_VERSION)
  hosts/<host>/opt/PMOD                           each host's installation (installed from OLD_VERSION)
  hosts/<host>/data/pmod.db                       the server's database, outside the installation
  hosts/<host>/{backups,state,logs,supervisor}    backups, journal and lock, logs, supervisord
  inventory/hosts.yml                             the Ansible inventory (local connection)
"""
import argparse
import hashlib
import io
import json
import os
import random
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


print('PMOD transaction server %s on port %s, database %s' % (VERSION, props['ts.port'], props['db.path']), flush=True)
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


def release_files(version, broken=False):
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
    return files


def make_release(root, version, broken=False):
    """Write releases/pmod-<version>.tar.gz and its .sha256; return the tarball path."""
    rel = os.path.join(root, 'releases')
    os.makedirs(rel, exist_ok=True)
    path = os.path.join(rel, 'pmod-%s.tar.gz' % version)
    top = 'pmod-%s' % version
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz', format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(release_files(version, broken)):
            data, mode = release_files(version, broken)[name]
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


def make_database(path, rows=3000, seed=7):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript(BASELINE_SQL)
    patients = rows // 6
    conn.executemany('INSERT INTO patients VALUES (?, ?, ?, ?)', [
        (i, 'P%06d' % i, rng.choice(['Müller', 'Meier', 'Schmid', 'Keller', 'Weber']) + '^' + rng.choice(['Anna', 'Jürg', 'Petra', 'Luca']),
         '19%02d-%02d-%02d' % (rng.randint(30, 99), rng.randint(1, 12), rng.randint(1, 28))) for i in range(1, patients + 1)])
    conn.executemany('INSERT INTO studies VALUES (?, ?, ?, ?, ?)', [
        (i, rng.randint(1, patients), '1.2.826.0.1.3680043.9.7.%d' % i, rng.choice(['PET/CT brain', 'FDG whole body', 'MR knee']),
         '20%02d-%02d-%02d' % (rng.randint(18, 25), rng.randint(1, 12), rng.randint(1, 28))) for i in range(1, rows // 2 + 1)])
    conn.executemany('INSERT INTO series VALUES (?, ?, ?, ?, ?)', [
        (i, rng.randint(1, rows // 2), '1.2.826.0.1.3680043.9.8.%d' % i, rng.choice(['PT', 'CT', 'MR']), rng.randint(1, 600))
        for i in range(1, rows + 1)])
    conn.executemany('INSERT INTO legacy_notes VALUES (?, ?)', [(i, 'note %d' % i) for i in range(1, 51)])
    conn.commit()
    conn.close()


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
command={install}/bin/start-{short}.sh
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


def build(root=DEFAULT_ROOT, clients=3, servers=1, rows=3000, quiet=False):
    """Build the whole lab under ``root`` (tearing down an older one first); return the inventory path."""
    root = os.path.abspath(root)
    teardown(root, quiet=True)
    os.makedirs(root)
    old = make_release(root, OLD_VERSION)
    make_release(root, NEW_VERSION)
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
    server_names = ['server%d' % i for i in range(1, servers + 1)]
    for index, name in enumerate(server_names):
        base = os.path.join(root, 'hosts', name)
        inst = os.path.join(base, 'opt', 'PMOD')
        for sub in ('backups', 'state', 'logs', 'supervisor'):
            os.makedirs(os.path.join(base, sub))
        install(inst, OLD_VERSION, old)
        db = os.path.join(base, 'data', 'pmod.db')
        make_database(db, rows=rows, seed=7 + index)
        ports = {'ts': free_port(), 'ls': free_port(), 'dicom': free_port()}
        aet = 'PMOD_DS%d' % (index + 1)
        customise(os.path.join(inst, 'properties', 'Config.properties'), {
            'site.name': 'Universitätsspital Zürich – Nuklearmedizin'.replace('–', '\\u2013'),
            'ts.port': ports['ts'], 'ls.port': ports['ls'], 'db.path': db, 'license.seats': 25,
            'site.contact': 'pacs-admin@example.invalid'})
        customise(os.path.join(inst, 'properties', 'Dicom.properties'), {'dicom.aet': aet, 'dicom.port': ports['dicom']})
        sup = os.path.join(base, 'supervisor')
        sock = socket_path(sup)
        conf = SUPERVISOR_CONF.format(sup=sup, sock=sock, logs=os.path.join(base, 'logs'))
        for svc, short, program, props in SERVICES:
            write_start_script(inst, short, program, props)
            conf += PROGRAM.format(name=svc, short=short, install=inst, logs=os.path.join(base, 'logs'))
        with open(os.path.join(sup, 'supervisord.conf'), 'w', encoding='utf-8') as handle:
            handle.write(conf)
        start_supervisord(os.path.join(sup, 'supervisord.conf'), sock)
        for port in ports.values():
            wait_port(port)
        inventory['all']['children']['servers']['hosts'][name] = {
            'upgrade_db_path': db,
            'upgrade_supervisor_config': os.path.join(sup, 'supervisord.conf'),
            'pmod_ports': ports,
            'pmod_dicom_aet': aet,
        }
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
            'ui.language': random.Random(i).choice(['de', 'fr', 'it']), 'db.path': sv['upgrade_db_path']})
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
    if not quiet:
        print('lab built under %s: %d server(s), %d client(s), PMOD %s installed, %s staged as a release'
              % (root, servers, clients, OLD_VERSION, NEW_VERSION))
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


def _is_supervisord(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return b'supervisord' in handle.read()
    except OSError:
        return False


def teardown(root=DEFAULT_ROOT, quiet=False, remove=True):
    """Stop every supervisord of the lab (by the PID in its pidfile) and delete the lab folder."""
    root = os.path.abspath(root)
    for pid in supervisord_pids(root):
        if not _is_supervisord(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if remove and os.path.isdir(root):
        if not os.path.exists(os.path.join(root, 'inventory', 'hosts.yml')) and os.listdir(root):
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
    parser.add_argument('--teardown', action='store_true')
    parser.add_argument('--broken-migration', action='store_true',
                        help='rebuild the %s release with a migration that fails' % NEW_VERSION)
    args = parser.parse_args(argv)
    if args.teardown:
        teardown(args.root)
    elif args.broken_migration:
        print(make_release(os.path.abspath(args.root), NEW_VERSION, broken=True))
    else:
        print(build(args.root, clients=args.clients, servers=args.servers, rows=args.rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
