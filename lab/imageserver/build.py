"""The ClearCanvas ImageServer stand-in's builder (the interface is in lab/pmod/build.py's docstring).

The release is the vendor's installer: releases/ImageServer-<version>.tar.gz holds ImageServer-<version>/setup.py (the
stand-in installer, installer/setup.py here), installer.json (its version; ``fail_at`` for a broken one), sql/ (the
schema scripts) and payload/ (the programs of bin/ here).  A server is installed by running the OLD_VERSION installer
with --fresh, then its database is filled: studies on two filesystems, pending WorkQueue (Reconcile and other) and
Study Integrity Queue entries, alerts, devices.  The database is always the lab's real PostgreSQL (standing in for SQL
Server); ImageServer has no client installations (its users work in the browser), so ``HAS_CLIENTS`` is False.
"""
import json
import os
import random
import subprocess
import urllib.request

import labkit  # pylint: disable=import-error
import procs  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILE = 'imageserver'
OLD_VERSION = '1.3.0'
NEW_VERSION = '2.0.0'
HAS_CLIENTS = False
DB_ENGINE = 'postgresql'        # always: the stand-in for SQL Server
PG_ROLE = 'imageserver'
PROGRAMS = ('is_common.py', 'shred_host.py', 'web_server.py', 'dicom_archive.py', 'isctl.py')
NEW_PROGRAMS = ('rebuild_studyxml.py',)   # the Service Scheduling service's rebuild came with 1.5
SQL = {'1.3.0': ['1.3.0.sql'], '2.0.0': ['1.3.0.sql', '2.0.0.sql']}
SERVICES = (('imageserver-web', 'web_server.py'), ('imageserver-shred', 'shred_host.py'),
            ('imageserver-dicom', 'dicom_archive.py'))
QUEUE = {'reconcile': 4, 'other': 4, 'integrity': 4}   # pending entries of a fresh lab
OPEN_SESSIONS = 2


def _read(relative):
    with open(os.path.join(HERE, relative), 'rb') as handle:
        return handle.read()


# ---------------------------------------------------------------- releases

def release_files(version, broken=None):
    """{relative path: (bytes, mode)} of the installer's tree; ``broken`` ('schema'): it fails in the schema upgrade."""
    meta = {'version': version}
    if broken:
        meta['fail_at'] = broken if isinstance(broken, str) else 'schema'
    files = {'setup.py': (_read('installer/setup.py'), 0o755),
             'installer.json': (json.dumps(meta, indent=2).encode() + b'\n', 0o644)}
    for name in SQL[version]:
        files['sql/' + name] = (_read('sql/' + name), 0o644)
    for name in PROGRAMS + (NEW_PROGRAMS if version != '1.3.0' else ()):
        files['payload/bin/' + name] = (_read('bin/' + name), 0o755)
    return files


def make_release(root, version, broken=False, payload_mb=0, files=None, top=None):  # pylint: disable=unused-argument
    path = os.path.join(root, 'releases', 'ImageServer-%s.tar.gz' % version)
    return labkit.write_tarball(path, top or 'ImageServer-%s' % version, release_files(version, broken) if files is None else files)


def make_releases(root, payload_mb=0):
    return {version: make_release(root, version, payload_mb=payload_mb) for version in (OLD_VERSION, NEW_VERSION)}


# ---------------------------------------------------------------- hosts

INSTALLER_ARGS = ['{{ upgrade_python }}', '{staged}/setup.py', '--install-dir', '{install_root}', '--registry',
                  '{{ imageserver_registry }}', '--log', '{log}', '--keep-database', 'yes']


def inventory_vars(root):
    """The lab's values for profiles/imageserver.yml, whose defaults are the Windows site's: the stand-in's artifact,
    installer command lines, supervisord program names, checks and rebuild command, and its DICOM archive (a separate
    process here; inside the ShredHostService on Windows) added to the services through the profile overrides."""
    python = '{{ upgrade_python }}'
    return {'upgrade_install_root': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/opt/ImageServer',
            'imageserver_registry': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/registry/ImageServer.json',
            # the prior version's installer, for the rollback (preflight refuses a major upgrade without it)
            'upgrade_prior_installer': os.path.join(root, 'releases', 'ImageServer-%s.tar.gz' % OLD_VERSION),
            'imageserver_artifact': 'ImageServer-{version}.tar.gz',
            'imageserver_installer_args': INSTALLER_ARGS,
            'imageserver_installer_rollback_args': INSTALLER_ARGS + ['--repair'],
            'imageserver_db_engine': DB_ENGINE,
            'imageserver_service_backend': 'supervisor',
            'imageserver_web_service': 'imageserver-web',
            'imageserver_shred_service': 'imageserver-shred',
            'imageserver_sessions_url': 'http://127.0.0.1:{{ imageserver_ports.web }}/sessions',
            'imageserver_web_check': [python, 'bin/isctl.py', 'web'],
            'imageserver_web_expect': '^OK ClearCanvas ImageServer {version}',
            'imageserver_shred_check': [python, 'bin/isctl.py', 'shred'],
            'imageserver_shred_expect': '^OK ShredHostService {version}',
            'imageserver_rebuild_command': [python, 'bin/rebuild_studyxml.py'],
            'upgrade_profile_overrides': {'services': [
                {'name': 'imageserver-dicom', 'kind': 'dicom', 'backend': 'supervisor',
                 'port': '{{ imageserver_ports.dicom }}', 'timeout': 30}]}}


def run_installer(site, base, version, *extra):
    """Run a release's installer from a scratch unpack (as a person would double-click it)."""
    scratch = os.path.join(base, 'tmp', 'setup-%s' % version)
    labkit.install(scratch, 'ImageServer-%s' % version, site.releases[version])
    proc = subprocess.run([labkit.PYTHON, os.path.join(scratch, 'setup.py'), '--install-dir', os.path.join(base, 'opt', 'ImageServer'),
                           '--registry', os.path.join(base, 'registry', 'ImageServer.json'),
                           '--log', os.path.join(base, 'logs', 'setup-%s.log' % version)] + list(extra),
                          capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
    if proc.returncode != 0:
        raise RuntimeError('the ImageServer %s installer failed: %s' % (version, (proc.stdout + proc.stderr)[-2000:]))


def create_database(site, name):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    pg = site.pg
    with labkit.pg_admin(pg) as conn:
        if conn.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (PG_ROLE,)).fetchone() is None:
            conn.execute(sql.SQL('CREATE ROLE {} LOGIN CREATEDB PASSWORD {}').format(sql.Identifier(PG_ROLE), sql.Literal(pg['password'])))
        conn.execute(sql.SQL('CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {}').format(
            sql.Identifier(name), sql.Identifier(PG_ROLE), sql.Literal('UTF8')))


def fill_database(db, base, rows, seed):
    """Studies on two filesystems with their Study XML files, pending queue entries, alerts, devices."""
    import psycopg  # pylint: disable=import-outside-toplevel
    rng = random.Random(seed)
    studies = max(8, rows // 75)
    with psycopg.connect(host=db['host'], port=db['port'], user=db['user'], password=db['password'], dbname=db['name'],
                         autocommit=True) as conn:
        for index in (1, 2):
            path = os.path.join(base, 'fs', 'fs%d' % index)
            os.makedirs(path)
            conn.execute('INSERT INTO Filesystem (FilesystemPath, Description) VALUES (%s, %s)', (path, 'filesystem %d' % index))
        for i in range(1, studies + 1):
            uid = '1.2.826.0.1.3680043.9.9.%d' % i
            fs_key = 1 + i % 2
            name = rng.choice(['Muster^Hans', 'Rossi^Maria', 'Dupont^Jean'])
            conn.execute('INSERT INTO Study (StudyInstanceUid, PatientId, PatientsName, FilesystemKey, NumberOfStudyRelatedInstances) '
                         'VALUES (%s, %s, %s, %s, %s)', (uid, 'P%05d' % i, name, fs_key, rng.randint(1, 900)))
            folder = os.path.join(base, 'fs', 'fs%d' % fs_key, uid)
            os.makedirs(folder)
            with open(os.path.join(folder, uid + '.xml'), 'w', encoding='utf-8') as handle:
                handle.write('<?xml version="1.0"?>\n<StudyXml version="1.3.0" studyInstanceUid="%s"/>\n' % uid)
        for i in range(QUEUE['reconcile']):
            conn.execute("INSERT INTO WorkQueue (WorkQueueTypeEnum, StudyKey) VALUES ('ReconcileStudy', %s)", (i + 1,))
        for i in range(QUEUE['other']):
            conn.execute("INSERT INTO WorkQueue (WorkQueueTypeEnum, StudyKey) VALUES (%s, %s)", (rng.choice(['StudyProcess', 'AutoRoute']), i + 1))
        for i in range(QUEUE['integrity']):
            conn.execute("INSERT INTO StudyIntegrityQueue (StudyKey, Reason) VALUES (%s, 'InconsistentData')", (i + 1,))
        for i in range(30):
            conn.execute('INSERT INTO Alert (Component, Content) VALUES (%s, %s)', ('ShredHost', 'alert %d' % i))
        for i in range(5):
            conn.execute('INSERT INTO Device (AeTitle, IpAddress, Port) VALUES (%s, %s, %s)', ('MODALITY%d' % i, '127.0.0.1', 11112 + i))


def install_server(site, name, index):
    """An ImageServer: its database, the 1.3.0 installer run with --fresh, queues filled, its three services (web
    interface, ShredHostService, DICOM archive) under the host's supervisord, two web sessions open."""
    base = site.host_dir(name)
    for sub in ('backups', 'state', 'logs', 'supervisor', 'registry', 'run', 'tmp'):
        os.makedirs(os.path.join(base, sub))
    database = 'imageserver_%s' % name
    create_database(site, database)
    ports = {'web': labkit.free_port(), 'dicom': labkit.free_port()}
    aet = 'IMAGESERVER%d' % (index + 1)
    db = {'host': site.pg['host'], 'port': site.pg['port'], 'name': database, 'user': PG_ROLE, 'password': site.pg['password']}
    settings = {'db': db, 'ports': ports, 'aet': aet, 'run_dir': os.path.join(base, 'run'),
                'shred': {'seconds_per_item': 0.7}}
    settings_file = os.path.join(base, 'tmp', 'settings.json')
    with open(settings_file, 'w', encoding='utf-8') as handle:
        json.dump(settings, handle)
    run_installer(site, base, OLD_VERSION, '--fresh', '--settings', settings_file)
    os.unlink(settings_file)
    fill_database(db, base, site.rows, 11 + index)
    inst = os.path.join(base, 'opt', 'ImageServer')
    conf = labkit.supervise(base, [(svc, '%s %s/bin/%s' % (labkit.PYTHON, inst, program)) for svc, program in SERVICES])
    for svc, port in (('imageserver-web', ports['web']), ('imageserver-dicom', ports['dicom'])):
        procs.wait_port(port, timeout=30, log=os.path.join(base, 'logs', '%s.log' % svc))
    for dummy in range(OPEN_SESSIONS):
        with urllib.request.urlopen('http://127.0.0.1:%d/login' % ports['web'], timeout=10) as answer:
            answer.read()
    return {'upgrade_supervisor_config': conf, 'imageserver_ports': ports, 'imageserver_aet': aet,
            'imageserver_db_name': database, 'imageserver_db_host': db['host'], 'imageserver_db_port': db['port'],
            'imageserver_db_user': PG_ROLE, 'imageserver_db_password': db['password']}


def install_client(site, name, index, server, server_vars):  # pylint: disable=unused-argument
    raise ValueError('ImageServer has no client installation (its users work in the web interface)')
