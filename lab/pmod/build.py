"""The PMOD stand-in's builder: its release tarballs, a server or client host, its inventory variables.

Every product folder under lab/ has a ``build.py`` with the same small interface, which lab/build_lab.py calls:

    PROFILE, OLD_VERSION, NEW_VERSION       the profile name (profiles/<PROFILE>.yml) and the two releases
    make_releases(root, payload_mb=0)       write ROOT/releases/<tarballs> (+ .sha256); return {version: path}
    make_release(root, version, broken=False, payload_mb=0)      one of them (``broken``: a failing migration)
    inventory_vars(root)                    the product's variables in the inventory's all.vars
    install_server(site, name, index)       install a server host (databases, services started); return its host vars
    install_client(site, name, index, server, server_vars)      install a client host; return its host vars

What is in the release is read from the real files next to this one: bin/ (the programs), properties/<version>/
(each release's default .properties), sql/ (the migrations; sql/broken/ the failing one), doc/, and releases.json
(which migrations each release carries, the schema its transaction server requires).  ``bin/pmod_ts.py`` and
``doc/README.txt`` are string.Template files (``${required_schema}``, ``${version}``).
"""
import json
import os
import random
import sqlite3
import string

import labkit  # pylint: disable=import-error
import procs  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'releases.json'), encoding='utf-8') as _handle:
    RELEASES = json.load(_handle)
PROFILE = 'pmod'
OLD_VERSION = RELEASES['old']
NEW_VERSION = RELEASES['new']
PG_ROLE = 'pmod'                # the product's database role (owns the databases, may create the restore's scratch one)
SERVICES = (('pmod-ls', 'ls', 'pmod_ls.py', 'properties/Config.properties'),
            ('pmod-ts', 'ts', 'pmod_ts.py', 'properties/Config.properties'),
            ('pmod-ds', 'ds', 'pmod_ds.py', 'properties/Dicom.properties'))


def _read(relative):
    with open(os.path.join(HERE, relative), 'rb') as handle:
        return handle.read()


BASELINE_SQL = _read('sql/V4.3.0__baseline.sql').decode('utf-8')


# ---------------------------------------------------------------- releases

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
    release = RELEASES['releases'][version]
    values = {'version': version, 'required_schema': release['required_schema']}

    def content(relative):
        data = _read(relative)
        if relative in RELEASES['templates']:
            data = string.Template(data.decode('utf-8')).substitute(values).encode('utf-8')
        return data

    files = {'VERSION': (('%s\n' % version).encode(), 0o644)}
    for program in RELEASES['programs']:
        files[program] = (content(program), 0o755)
    for name in ('Config.properties', 'Dicom.properties'):
        files['properties/' + name] = (_read(os.path.join('properties', version, name)), 0o644)
    files['doc/README.txt'] = (content('doc/README.txt'), 0o644)
    for name in release['migrations']:
        source = release.get('broken', {}).get(name, name) if broken else name
        files['sql/' + name] = (_read('sql/' + source), 0o644)
    files.update(payload_files(version, payload_mb))
    return files


def make_release(root, version, broken=False, payload_mb=0, files=None, top=None):
    """Write releases/pmod-<version>.tar.gz and its .sha256; return the tarball path.

    ``payload_mb``: add that many MB of stand-in libraries (the benchmark's realistic release size).
    ``files`` ({path: (bytes, mode)}, default :func:`release_files`) and ``top`` (the folder at the archive's top,
    default ``pmod-<version>``): a release as a vendor might really ship it, faults included (the fault tests)."""
    path = os.path.join(root, 'releases', 'pmod-%s.tar.gz' % version)
    files = release_files(version, broken, payload_mb) if files is None else files
    return labkit.write_tarball(path, top or 'pmod-%s' % version, files, compresslevel=6 if payload_mb else 9)


def make_releases(root, payload_mb=0):
    return {version: make_release(root, version, payload_mb=payload_mb) for version in (OLD_VERSION, NEW_VERSION)}


# ---------------------------------------------------------------- the database's rows

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


def make_pg_database(state, name, password, rows=3000, seed=7):
    """Create database ``name`` owned by the product's role (created with ``password`` if missing) and load the rows.

    The rows are loaded as that role over TCP with its password, the way the product connects.
    """
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    with labkit.pg_admin(state) as conn:
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


def _server_database(site, base, name, index):
    """Create a server's database; return (its keys in Config.properties, its inventory variables)."""
    if site.db == 'postgresql':
        pg = site.pg
        database = 'pmod_%s' % name
        make_pg_database(pg, database, pg['password'], rows=site.rows, seed=7 + index)
        props = {'db.engine': 'postgresql', 'db.host': pg['host'], 'db.port': pg['port'], 'db.name': database,
                 'db.user': PG_ROLE, 'db.password': pg['password']}
        # the profile's database.connection (profiles/pmod.yml) reads these
        return props, {'pmod_db_engine': 'postgresql', 'pmod_db_name': database, 'pmod_db_host': pg['host'],
                       'pmod_db_port': pg['port'], 'pmod_db_user': PG_ROLE, 'pmod_db_password': pg['password']}
    path = os.path.join(base, 'data', 'pmod.db')
    make_database(path, rows=site.rows, seed=7 + index)
    return {'db.path': path}, {'upgrade_db_path': path}


# ---------------------------------------------------------------- hosts

def inventory_vars(root):  # pylint: disable=unused-argument
    return {'upgrade_install_root': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/opt/PMOD'}


def _install(site, base):
    inst = os.path.join(base, 'opt', 'PMOD')
    labkit.install(inst, 'pmod-%s' % OLD_VERSION, site.releases[OLD_VERSION])
    return inst


def write_start_script(install_root, name, program, properties):
    path = os.path.join(install_root, 'bin', 'start-%s.sh' % name)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write('#!/bin/sh\n# generated by the PMOD installer\ncd "%s" || exit 1\nexec "%s" "%s/bin/%s" --properties "%s/%s"\n'
                     % (install_root, labkit.PYTHON, install_root, program, install_root, properties))
    os.chmod(path, 0o755)


def install_server(site, name, index):
    """A PMOD server: the old release installed, its database, the site's ports and AE title, and its three
    services (TS, LS, DS; or Orthanc as DS) under the host's own supervisord, each port answering."""
    base = site.host_dir(name)
    for sub in ('backups', 'state', 'logs', 'supervisor'):
        os.makedirs(os.path.join(base, sub))
    inst = _install(site, base)
    db_props, db_vars = _server_database(site, base, name, index)
    site.shared[name] = db_props
    ports = {'ts': labkit.free_port(), 'ls': labkit.free_port(), 'dicom': labkit.free_port()}
    aet = 'PMOD_DS%d' % (index + 1)
    labkit.customise(os.path.join(inst, 'properties', 'Config.properties'), {
        'site.name': 'Universitätsspital Zürich – Nuklearmedizin'.replace('–', '\\u2013'),
        'ts.port': ports['ts'], 'ls.port': ports['ls'], **db_props, 'license.seats': 25,
        'site.contact': 'pacs-admin@example.invalid'})
    labkit.customise(os.path.join(inst, 'properties', 'Dicom.properties'), {'dicom.aet': aet, 'dicom.port': ports['dicom']})
    programs = []
    for svc, short, program, props in SERVICES:
        write_start_script(inst, short, program, props)
        command = '%s/bin/start-%s.sh' % (inst, short)
        if svc == 'pmod-ds' and site.dicom == 'orthanc':
            # the site's DICOM node is Orthanc: not part of the installation, so the upgrade stops and starts it
            dicom = labkit.read_properties(os.path.join(inst, props))
            config = labkit.write_orthanc_config(base, dicom['dicom.aet'], dicom['dicom.port'], 'PMOD DICOM node of %s' % name)
            command = '%s %s' % (labkit.ORTHANC, config)
        programs.append((svc, command))
    conf = labkit.supervise(base, programs)
    for svc, port in (('pmod-ts', ports['ts']), ('pmod-ls', ports['ls']), ('pmod-ds', ports['dicom'])):
        procs.wait_port(port, timeout=30, log=os.path.join(base, 'logs', '%s.log' % svc))
    return dict(db_vars, **{
        'upgrade_supervisor_config': conf,
        'pmod_ports': ports,
        'pmod_dicom_aet': aet,
    })


def install_client(site, name, index, server, server_vars):
    """A PMOD workstation: the old release installed, pointed at its server's TS, LS, DS and database."""
    base = site.host_dir(name)
    os.makedirs(os.path.join(base, 'state'))
    inst = _install(site, base)
    labkit.customise(os.path.join(inst, 'properties', 'Config.properties'), {
        'ts.port': server_vars['pmod_ports']['ts'], 'ls.port': server_vars['pmod_ports']['ls'], 'ts.host': '127.0.0.1',
        'ui.language': random.Random(index).choice(['de', 'fr', 'it']), **site.shared[server]})
    labkit.customise(os.path.join(inst, 'properties', 'Dicom.properties'), {
        'dicom.aet': 'PMOD_WS%d' % index, 'dicom.port': server_vars['pmod_ports']['dicom']})
    # the server's address in the client's own variables: a sliced job's inventory may hold the client without its server
    return {'upgrade_server': server, 'pmod_server_host': '127.0.0.1', 'pmod_server_ports': server_vars['pmod_ports'],
            'pmod_server_dicom_aet': server_vars['pmod_dicom_aet']}
