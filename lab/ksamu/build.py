"""The KSAMU stand-in's builder: its releases and release source, a server (on a real Firebird 3.0) or a client host.

The interface every product folder has (see lab/pmod/build.py's docstring): PROFILE, OLD_VERSION/NEW_VERSION,
make_releases, make_release, inventory_vars, install_server, install_client.  Beyond it: ``MINOR_VERSION`` and
``TEST_VERSION`` (the releases of a minor update and of the test channel only), ``write_listing`` (the release
source's listing file) and ``teardown(root)`` (nothing beyond supervisord: Firebird runs under it).

What is real: Firebird 3.0 from Debian (``/usr/sbin/firebird``, its own root folder, security database, lock folder
and a free 127.0.0.1 port, run by the server host's supervisord), the database, gbak, supervisord, the release
tarballs and their sha256 files, the listing file.  What is a stand-in: the KSAMU programs in bin/ (server with its
thread manager, the administrator's command, the updater), the database scripts in scripts/, the users (sessions in
the database and one "screen" file each, where the server writes what the user was shown).
"""
import json
import os
import secrets
import shutil
import string
import subprocess

import labkit  # pylint: disable=import-error
import procs  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'releases.json'), encoding='utf-8') as _handle:
    RELEASES = json.load(_handle)
PROFILE = 'ksamu'
OLD_VERSION = RELEASES['old']
NEW_VERSION = RELEASES['new']
MINOR_VERSION = '6.0.51.22966'
TEST_VERSION = '6.0.52.23005'
USERS = ('ivanova', 'petrov', 'sidorova')
FB_LIBDIR = '/usr/lib/x86_64-linux-gnu/firebird/3.0'
FB_SECURITY = '/var/lib/firebird/3.0/system/security3.fdb'
FIREBIRD = '/usr/sbin/firebird'


def _read(relative):
    with open(os.path.join(HERE, relative), 'rb') as handle:
        return handle.read()


# ---------------------------------------------------------------- releases and the release source

def release_files(version, broken=False):
    """{relative path: (bytes, mode)} of the release tree."""
    release = RELEASES['releases'][version]
    files = {'version.txt': (('%s\n' % version).encode(), 0o644),
             'config/server.ini': (_read('config/server.ini'), 0o644)}
    for program in RELEASES['programs']:
        files[program] = (_read(program), 0o755)
    for relative in RELEASES['templates']:
        files[relative] = (string.Template(_read(relative).decode('utf-8')).substitute(version=version).encode('utf-8'), 0o644)
    for name in release['scripts']:
        source = release.get('broken', {}).get(name, name) if broken else name
        files['scripts/' + name] = (_read('scripts/' + source), 0o644)
    return files


def write_listing(root):
    """releases/listing.json: each channel's releases ({channel: [{version, file}]}), what the profile's
    artifact.listing names."""
    listing = {'channels': {}}
    for version, release in sorted(RELEASES['releases'].items()):
        for channel in release['channels']:
            listing['channels'].setdefault(channel, []).append({'version': version, 'file': 'ksamu-%s.tar.gz' % version})
    path = os.path.join(root, 'releases', 'listing.json')
    with open(path + '.tmp', 'w', encoding='utf-8') as handle:
        json.dump(listing, handle, indent=2)
    os.replace(path + '.tmp', path)
    return path


def make_release(root, version, broken=False, payload_mb=0):  # pylint: disable=unused-argument
    """Write releases/ksamu-<version>.tar.gz and its .sha256; return the tarball path (``broken``: a failing script)."""
    path = os.path.join(root, 'releases', 'ksamu-%s.tar.gz' % version)
    return labkit.write_tarball(path, 'ksamu-%s' % version, release_files(version, broken))


def make_releases(root, payload_mb=0):
    made = {version: make_release(root, version, payload_mb=payload_mb) for version in RELEASES['releases']}
    write_listing(root)
    return made


# ---------------------------------------------------------------- Firebird

def firebird_root(base, port, password):
    """A Firebird root folder of the host: the libraries linked in, its own security database (SYSDBA's password set
    in embedded mode), firebird.conf on 127.0.0.1:``port``; return the environment Firebird runs with."""
    root = os.path.join(base, 'firebird')
    os.makedirs(os.path.join(root, 'lock'))
    for name in ('plugins', 'intl', 'lib', 'UDF', 'firebird.msg', 'plugins.conf', 'fbtrace.conf'):
        os.symlink(os.path.join(FB_LIBDIR, name), os.path.join(root, name))
    shutil.copy(FB_SECURITY, os.path.join(root, 'security3.fdb'))
    with open(os.path.join(root, 'firebird.conf'), 'w', encoding='utf-8') as handle:
        handle.write('RemoteServicePort = %d\nRemoteBindAddress = 127.0.0.1\nUdfAccess = None\nSecurityDatabase = %s\n'
                     % (port, os.path.join(root, 'security3.fdb')))
    with open(os.path.join(root, 'databases.conf'), 'w', encoding='utf-8') as handle:
        handle.write('security.db = %s\n' % os.path.join(root, 'security3.fdb'))
    env = {'FIREBIRD': root, 'FIREBIRD_LOCK': os.path.join(root, 'lock')}
    subprocess.run(['isql-fb', '-user', 'SYSDBA', os.path.join(root, 'security3.fdb')],
                   input="create or alter user SYSDBA password '%s' using plugin Srp; commit;\n" % password,
                   text=True, env=dict(os.environ, **env), check=True, capture_output=True)
    return env


def make_database(dsn, password, rows):
    """The KSAMU database at scripts 6.0.51: the baseline tables, ``rows`` patients, the lock row, the version row."""
    from firebird.driver import create_database  # pylint: disable=import-outside-toplevel
    conn = create_database(dsn, user='SYSDBA', password=password, charset='UTF8')
    cur = conn.cursor()
    for statement in _read('scripts/baseline.sql').decode('utf-8').split(';'):
        lines = [line for line in statement.splitlines() if not line.strip().startswith('--')]
        if ''.join(lines).strip():
            cur.execute('\n'.join(lines))
            conn.commit()
    names = ('Иванов Иван', 'Петрова Анна', 'Сидоров Пётр', 'Смирнова Ольга', 'Кузнецов Олег')
    cur.executemany('INSERT INTO KS_PATIENTS (ID, FULL_NAME) VALUES (?, ?)',
                    [(i, '%s %d' % (names[i % len(names)], i)) for i in range(1, rows + 1)])
    cur.execute("INSERT INTO KS_STATE (NAME, VAL) VALUES ('locked', '0')")
    cur.execute('INSERT INTO KS_VERSION (SCRIPTS, APP) VALUES (?, ?)', ('.'.join(OLD_VERSION.split('.')[:3]), OLD_VERSION))
    conn.commit()
    conn.close()


# ---------------------------------------------------------------- hosts

def inventory_vars(root):
    # the lab upgrades at any time: its upgrade_window removes the profile's forbidden hours 06:00-21:00 (a key set to
    # null removes the profile's; the window guard itself is tested in tests/integration/test_window_guard.py)
    return {'upgrade_install_root': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/opt/KSAMU',
            'upgrade_release_source': os.path.join(root, 'releases'),
            'upgrade_window': {'forbidden_hours': None, 'days': None}}


def _install(site, base):
    inst = os.path.join(base, 'opt', 'KSAMU')
    labkit.install(inst, 'ksamu-%s' % OLD_VERSION, site.releases[OLD_VERSION])
    return inst


def write_ini(path, changes):
    """Set ``changes`` ({section: {key: value}}) in an ini file, keeping its comments and order."""
    with open(path, encoding='utf-8') as handle:
        lines = handle.read().splitlines()
    section, out = None, []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith('['):
            section = stripped.strip('[]')
        elif '=' in stripped and not stripped.startswith(';') and section in changes:
            key = stripped.split('=', 1)[0].strip()
            if key in changes[section]:
                line = '%s = %s' % (key, changes[section][key])
        out.append(line)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(out) + '\n')


def install_server(site, name, index):  # pylint: disable=unused-argument
    """A KSAMU server: Firebird 3.0 (supervised, its own port) with the database outside the installation, the old
    release installed and configured, the application server (supervised) answering, USERS logged on."""
    base = site.host_dir(name)
    for sub in ('backups', 'state', 'logs', 'supervisor', 'data'):
        os.makedirs(os.path.join(base, sub))
    inst = _install(site, base)
    fb_port, port = labkit.free_port(), labkit.free_port()
    password = secrets.token_urlsafe(12)
    env = firebird_root(base, fb_port, password)
    db_path = os.path.join(base, 'data', 'KSAMU.FDB')
    write_ini(os.path.join(inst, 'config', 'server.ini'), {
        'server': {'port': port, 'install': inst, 'data': os.path.join(base, 'data'), 'session_timeout': 45},
        'database': {'port': fb_port, 'path': db_path, 'password': password}})
    start = os.path.join(inst, 'bin', 'start-server.sh')
    with open(start, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\n# generated by the KSAMU installer\ncd "%s" || exit 1\nexec "%s" "%s/bin/ksamu_server.py" --config "%s/config/server.ini"\n'
                     % (inst, labkit.PYTHON, inst, inst))
    os.chmod(start, 0o755)
    fb_command = '/usr/bin/env %s %s' % (' '.join('%s=%s' % item for item in sorted(env.items())), FIREBIRD)
    conf = labkit.supervise(base, [('ksamu-fb', fb_command), ('ksamu-server', start)])
    procs.wait_port(fb_port, timeout=30, log=os.path.join(base, 'logs', 'ksamu-fb.log'))
    make_database('127.0.0.1/%d:%s' % (fb_port, db_path), password, site.rows)
    procs.wait_port(port, timeout=30, log=os.path.join(base, 'logs', 'ksamu-server.log'))
    return {'upgrade_supervisor_config': conf, 'ksamu_port': port, 'ksamu_db_path': db_path, 'ksamu_db_host': '127.0.0.1',
            'ksamu_db_port': fb_port, 'ksamu_db_password': password,
            'ksamu_update_log': os.path.join(base, 'logs', 'ksamu-update.log')}


def install_client(site, name, index, server, server_vars):
    """A KSAMU workstation: the old client installed and its user logged on to the server."""
    base = site.host_dir(name)
    os.makedirs(os.path.join(base, 'state'))
    _install(site, base)
    user = USERS[(index - 1) % len(USERS)]
    login(server_vars['ksamu_port'], user, OLD_VERSION)
    return {'upgrade_server': server, 'ksamu_user': user}


def login(port, user, client_version):
    """``user`` logs on to the server on ``port`` with a client of ``client_version``."""
    answer = admin(port, 'user', 'login', user, client_version)
    if answer != ['OK']:
        raise RuntimeError('%s could not log on: %s' % (user, answer))


def admin(port, *args):
    """The administrator's command against the server on ``port``: its answer's lines."""
    proc = subprocess.run([labkit.PYTHON, os.path.join(HERE, 'bin', 'ksamu_admin.py'), '--port', str(port)] + list(args),
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout.splitlines()
