"""The ConAktiv stand-in's builder (the interface is in lab/pmod/build.py's docstring).

A ConAktiv site: one server folder ``hosts/<server>/srv/ConAktiv Server`` whose server (bin/ca_server.py) runs under
the host's supervisord and keeps the users' sessions; its "Server Database" holds the site's Preferences/Server.json,
a real certificate pair (openssl), the site's Hunspell dictionaries and the data file ConAktiv.4DD (a real SQLite
file: the user module, with one user marked as administrator for server messages, and contacts). The releases are
compressed (tar.gz, with a .sha256) and served by the lab's **real** FTP server (pyftpdlib on 127.0.0.1, lab/ftp_server.py),
which the profile downloads them from. Clients are not inventory hosts (ConAktiv clients update themselves from the
server): each is a user session (bin/ca_client.py) under its own supervisord, writing what it is shown to
``hosts/<client>/messages.log``; client1 and client2 log off after the message, client3 stays logged on.
"""
import json
import os
import random
import secrets
import shutil
import sqlite3
import string
import subprocess

import labkit  # pylint: disable=import-error
import procs  # pylint: disable=import-error
import ftp_server  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'releases.json'), encoding='utf-8') as _handle:
    RELEASES = json.load(_handle)
PROFILE = 'conaktiv'
OLD_VERSION = RELEASES['old']
NEW_VERSION = RELEASES['new']
TOP = 'ConAktiv Server'
SERVICE = 'conaktiv-server'
FTP_USER = 'conaktiv-update'
USERS = [('admin', 'Andrea Admin', 'it-admin@klinik.example', 1), ('mueller', 'Jürg Müller', 'mueller@klinik.example', 0),
         ('keller', 'Petra Keller', 'keller@klinik.example', 0), ('weber', 'Luca Weber', 'weber@klinik.example', 0)]
SESSIONS = {1: ('mueller', 'logoff'), 2: ('keller', 'logoff'), 3: ('weber', 'stay')}


def _read(relative):
    with open(os.path.join(HERE, relative), 'rb') as handle:
        return handle.read()


def release_name(version):
    return 'ConAktiv_Server_%s.tar.gz' % version


# ---------------------------------------------------------------- releases

def release_files(version, broken=False):
    release = RELEASES['releases'][version]
    structure = {'statements': release['structure'], 'fails': release.get('broken_fails', '') if broken else ''}
    files = {'version.txt': (('%s\n' % version).encode(), 0o644),
             'bin/structure.json': (json.dumps(structure, indent=1).encode(), 0o644),
             'Server Database/Preferences/Server.json': (_read('release/Server.json'), 0o644),
             'Server Database/Resources/Hunspell/de_DE.dic': (_read('release/de_DE.dic'), 0o644),
             'Server Database/Resources/Hunspell/de_DE.aff': (_read('release/de_DE.aff'), 0o644),
             'doc/Liesmich.txt': (string.Template(_read('release/Liesmich.txt').decode()).substitute(version=version).encode(), 0o644)}
    for program in RELEASES['programs']:
        files[program] = (_read(program), 0o755)
    return files


def make_release(root, version, broken=False, payload_mb=0):  # pylint: disable=unused-argument
    """Write releases/ConAktiv_Server_<version>.tar.gz and its .sha256 (the FTP server's folder); return the path."""
    return labkit.write_tarball(os.path.join(root, 'releases', release_name(version)), TOP, release_files(version, broken))


def make_releases(root, payload_mb=0):
    """Both releases, and the vendor's FTP server serving them (its PID and port in ROOT/ftp/ftp.json)."""
    made = {version: make_release(root, version, payload_mb=payload_mb) for version in (OLD_VERSION, NEW_VERSION)}
    state_dir = os.path.join(root, 'ftp')
    password = secrets.token_urlsafe(15)
    server = ftp_server.start(os.path.join(root, 'releases'), state_dir, FTP_USER, password)
    with open(os.path.join(state_dir, 'ftp.json'), 'w', encoding='utf-8') as handle:
        json.dump(dict(server, user=FTP_USER, password=password), handle)
    return made


def ftp_state(root):
    with open(os.path.join(root, 'ftp', 'ftp.json'), encoding='utf-8') as handle:
        return json.load(handle)


def teardown(root):
    """Stop the lab's FTP server (by the PID it keeps)."""
    path = os.path.join(root, 'ftp', 'ftp.json')
    if os.path.isfile(path):
        ftp_server.stop(ftp_state(root)['pid'])


# ---------------------------------------------------------------- the site's data

def make_data_file(path, rows=300, seed=11):
    """The data file: the structure version, the user module (one administrator for server messages), contacts."""
    if os.path.exists(path):
        os.unlink(path)
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.executescript('CREATE TABLE structure (version TEXT NOT NULL);'
                       'CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT UNIQUE, name TEXT, email TEXT,'
                       ' admin_server_messages INTEGER NOT NULL DEFAULT 0);'
                       'CREATE TABLE contacts (id INTEGER PRIMARY KEY, company TEXT, city TEXT, owner TEXT);')
    conn.execute('INSERT INTO structure VALUES (?)', (OLD_VERSION,))
    conn.executemany('INSERT INTO users (login, name, email, admin_server_messages) VALUES (?, ?, ?, ?)', USERS)
    conn.executemany('INSERT INTO contacts VALUES (?, ?, ?, ?)', [
        (i, '%s %s' % (rng.choice(['Praxis', 'Klinik', 'Labor', 'Apotheke']), rng.choice(['Nord', 'Süd', 'am See', 'Zentrum'])),
         rng.choice(['Zürich', 'Köln', 'Graz', 'Bern']), rng.choice([u[0] for u in USERS])) for i in range(1, rows + 1)])
    conn.commit()
    conn.close()


def certificate(folder):
    """A real self-signed certificate pair (cert.pem, key.pem mode 0600), as the site installed it."""
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=conaktiv.lab.invalid',
                    '-keyout', os.path.join(folder, 'key.pem'), '-out', os.path.join(folder, 'cert.pem')],
                   check=True, capture_output=True)
    os.chmod(os.path.join(folder, 'key.pem'), 0o600)
    os.chmod(os.path.join(folder, 'cert.pem'), 0o644)


def customise_server(inst, port, web_port, rows, seed):
    db = os.path.join(inst, 'Server Database')
    prefs = os.path.join(db, 'Preferences', 'Server.json')
    with open(prefs, encoding='utf-8') as handle:
        settings = json.load(handle)
    settings.update(port=port, cache_mb=512, timeout_s=120, web_server={'autostart': True, 'port': web_port},
                    backup={'schedule': 'daily 23:30', 'keep': 7, 'folder': 'D:/Sicherung/ConAktiv'})
    with open(prefs, 'w', encoding='utf-8') as handle:
        json.dump(settings, handle, indent=2)
    with open(os.path.join(db, 'Preferences', 'Benutzer.ini'), 'w', encoding='utf-8') as handle:
        handle.write('[Anmeldung]\nautomatisch=1\nletzter=admin\n')
    with open(os.path.join(db, 'Resources', 'Hunspell', 'de_DE_klinik.dic'), 'w', encoding='utf-8') as handle:
        handle.write('4\nSzintigrafie\nNuklearmedizin\nPET/CT\nÜberweisung\n')
    certificate(db)
    make_data_file(os.path.join(db, 'ConAktiv.4DD'), rows=rows, seed=seed)


# ---------------------------------------------------------------- hosts

def inventory_vars(root):
    ftp = ftp_state(root)
    return {
        'upgrade_install_root': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/srv/ConAktiv Server',
        'conaktiv_release_url': ftp['url'],
        # lab only: a site keeps the password in Ansible Vault (see inventories/conaktiv)
        'upgrade_artifact_url_username': ftp['user'],
        'upgrade_artifact_url_password': ftp['password'],
        'conaktiv_service_name': SERVICE,
        'conaktiv_service_backend': 'supervisor',
        'conaktiv_wait_seconds': 30,
        # the lab upgrades at any hour: its upgrade_window removes the profile's from/to (a key set to null removes the
        # profile's; the guard is tested in tests/integration/test_window_guard.py, and on this lab with the profile's
        # from/to and a start date in test_conaktiv.py)
        'upgrade_window': {'from': None, 'to': None},
    }


def install_server(site, name, index):
    """The server folder of OLD_VERSION with the site's settings, certificate pair, dictionaries and data file; its
    server under the host's supervisord, answering on its port. A pristine copy is kept for :func:`reset_server`."""
    base = site.host_dir(name)
    for sub in ('backups', 'state', 'logs', 'supervisor', 'srv'):
        os.makedirs(os.path.join(base, sub))
    inst = os.path.join(base, 'srv', TOP)
    labkit.install(inst, TOP, site.releases[OLD_VERSION])
    port, web_port = labkit.free_port(), labkit.free_port()
    customise_server(inst, port, web_port, min(site.rows, 1000), 11 + index)
    shutil.copytree(inst, os.path.join(base, 'pristine', TOP), symlinks=True)
    conf = labkit.supervise(base, [(SERVICE, '%s "%s/bin/ca_server.py"' % (labkit.PYTHON, inst))])
    procs.wait_port(port, timeout=30, log=os.path.join(base, 'logs', '%s.log' % SERVICE))
    site.shared[name] = {'port': port}
    return {'upgrade_supervisor_config': conf, 'conaktiv_port': port}


def install_client(site, name, index, server, server_vars):  # pylint: disable=unused-argument
    """A user session on ``server`` under the client's own supervisord (not an inventory host: returns None)."""
    base = site.host_dir(name)
    for sub in ('logs', 'supervisor'):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    user, behaviour = SESSIONS.get(index, ('user%d' % index, 'logoff'))
    log = os.path.join(base, 'messages.log')
    command = '%s "%s" --port %d --user %s --log "%s" --on-message %s --delay 1' % (
        labkit.PYTHON, os.path.join(HERE, 'bin', 'ca_client.py'), server_vars['conaktiv_port'], user, log, behaviour)
    labkit.supervise(base, [('ca-client', command)])
    return None


# ---------------------------------------------------------------- between test cases

def supervisorctl(conf, *args):
    return subprocess.run([os.path.join(os.path.dirname(labkit.PYTHON), 'supervisorctl'), '-c', conf] + list(args),
                          capture_output=True, text=True, check=False)


def sessions_up(root, expected):
    """True when the server lists exactly the ``expected`` users as logged on."""
    base = os.path.join(root, 'hosts', 'server1')
    inst = os.path.join(base, 'srv', TOP)
    proc = subprocess.run([labkit.PYTHON, os.path.join(inst, 'bin', 'ca_admin.py'), '--root', inst, 'who'],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and sorted(proc.stdout.split()) == sorted(expected)


def reset_site(root, server='server1', clients=3):
    """Put the site back as built: the server stopped, its folder (and every _old/_failed folder, Temp_Updateordner,
    journal, backups) replaced by the pristine old installation, the server started, the user sessions logged on
    again with empty message logs."""
    base = os.path.join(root, 'hosts', server)
    conf = os.path.join(base, 'supervisor', 'supervisord.conf')
    supervisorctl(conf, 'stop', SERVICE)
    srv = os.path.join(base, 'srv')
    for entry in os.listdir(srv):
        shutil.rmtree(os.path.join(srv, entry))
    for sub in ('backups', 'state'):
        shutil.rmtree(os.path.join(base, sub), ignore_errors=True)
        os.makedirs(os.path.join(base, sub))
    shutil.copytree(os.path.join(base, 'pristine', TOP), os.path.join(srv, TOP), symlinks=True)
    supervisorctl(conf, 'start', SERVICE)
    users = []
    for index in range(1, clients + 1):
        cbase = os.path.join(root, 'hosts', 'client%d' % index)
        cconf = os.path.join(cbase, 'supervisor', 'supervisord.conf')
        supervisorctl(cconf, 'stop', 'ca-client')
        log = os.path.join(cbase, 'messages.log')
        if os.path.exists(log):
            os.unlink(log)
        supervisorctl(cconf, 'start', 'ca-client')
        users.append(SESSIONS.get(index, ('user%d' % index, ''))[0])
    procs.wait_until(lambda: sessions_up(root, users), 'the user sessions %s did not log on again' % users, timeout=30)
