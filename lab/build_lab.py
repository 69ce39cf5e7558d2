#!/usr/bin/env python
"""Build a site of a stand-in product on this machine from nothing, for the demo, the tests and the benchmark.

    build_lab.py [--root DIR] [--product pmod] [--clients N] [--servers N]     build (or rebuild) the lab
                 [--db sqlite|postgresql] [--dicom pynetdicom|orthanc]
    build_lab.py --root DIR --teardown                        stop its processes (by PID) and delete it
    build_lab.py --root DIR --broken-migration                rebuild the new release with a failing migration

This file is the generic site builder: the lab folder, the inventory, the PostgreSQL cluster, teardown.  Each
product has its own folder, lab/<product>/, with its stand-in programs, properties and migrations as real files
and a ``build.py`` that makes its releases and installs its hosts (the interface is in lab/pmod/build.py's
docstring): ``pmod`` (the default), ``imageserver`` (an installer-driven product on the lab's PostgreSQL), ``conaktiv``
and ``ksamu`` (on a real Firebird 3.0, run by the server host's supervisord).  The shared parts (supervisord, PostgreSQL, Orthanc, .properties) are in
lab/labkit.py, the process control (start, wait until ready, stop by PID) in lab/procs.py.

What is real and what is a stand-in:
  * stand-ins: the "PMOD" product itself (small Python programs for the transaction server, the license
    server and the DICOM server, a control tool with "Echo TS"/"Echo DB"), its release tarballs, its
    properties files and its SQL migrations (all in lab/pmod/);
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
import importlib
import json
import os
import secrets
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import labkit  # noqa: E402  pylint: disable=wrong-import-position,import-error
from pmod import build as pmod_build  # noqa: E402  pylint: disable=wrong-import-position,import-error

# this module's API for the tests and the benchmark (the default product's releases and rows, the variants' parts)
OLD_VERSION, NEW_VERSION = pmod_build.OLD_VERSION, pmod_build.NEW_VERSION
make_release = pmod_build.make_release
release_files = pmod_build.release_files
sample_rows = pmod_build.sample_rows
ORTHANC = labkit.ORTHANC
read_properties = labkit.read_properties
missing_prerequisites = labkit.missing_prerequisites
postgres_state = labkit.postgres_state

REPO = os.path.dirname(HERE)
DEFAULT_ROOT = os.environ.get('CLINOPS_LAB', '/tmp/clinops-lab')
PYTHON = sys.executable
PRODUCTS = ('pmod', 'imageserver', 'conaktiv', 'ksamu')   # each a folder lab/<product>/ with a build.py
DB_ENGINES = ('sqlite', 'postgresql')
DICOM_SERVERS = ('pynetdicom', 'orthanc')
MARKER = '.clinops-lab'          # written first: teardown deletes only folders that have it (or an inventory)


def product_builder(product):
    """The builder module of ``product`` (lab/<product>/build.py)."""
    if product not in PRODUCTS:
        raise ValueError('product must be one of %s, not %r' % (', '.join(PRODUCTS), product))
    return importlib.import_module('%s.build' % product)


def build(root=DEFAULT_ROOT, clients=3, servers=1, rows=3000, quiet=False, db='sqlite', dicom='pynetdicom', payload_mb=0,
          ssh=False, product=PRODUCTS[0]):
    """Build the whole lab under ``root`` (tearing down an older one first); return the inventory path.

    ``db``: ``sqlite`` (a file per server) or ``postgresql`` (the lab's own PostgreSQL 15 cluster, a database
    per server).  ``dicom``: ``pynetdicom`` (the stand-in DICOM server) or ``orthanc`` (Debian's Orthanc).
    ``payload_mb``: MB of stand-in libraries in each release (0: a few KB).  ``ssh``: reach every host over SSH, each
    through its own sshd in its own mount namespace (lab/ssh_hosts.py); the inventory returned is then that one.
    ``product``: the stand-in product (a folder lab/<product>/).
    When the build fails, what it started is stopped again (the folder is kept for its logs).
    """
    builder = product_builder(product)
    # a product may fix its database engine (ImageServer: PostgreSQL standing in for SQL Server) or have no clients
    db = getattr(builder, 'DB_ENGINE', None) or db
    clients = clients if getattr(builder, 'HAS_CLIENTS', True) else 0
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
        inv = _build(builder, root, clients, servers, rows, db, dicom, payload_mb)
        if ssh:
            inv = _ssh_hosts().enable(root, inv)
    except BaseException:
        teardown(root, quiet=True, remove=False)
        raise
    if not quiet:
        variant = '' if (db, dicom) == (DB_ENGINES[0], DICOM_SERVERS[0]) else ' (database %s, DICOM server %s)' % (db, dicom)
        print('lab built under %s: %d server(s), %d client(s), %s %s installed, %s staged as a release%s'
              % (root, servers, clients, builder.PROFILE.upper(), builder.OLD_VERSION, builder.NEW_VERSION, variant))
    return inv


def _build(builder, root, clients, servers, rows, db, dicom, payload_mb=0):
    """The site: the product's releases, the PostgreSQL cluster (--db postgresql), the servers, then the clients
    (each client served by a server in turn), and the inventory."""
    site = labkit.Site(root, rows, db, dicom, releases=builder.make_releases(root, payload_mb=payload_mb))
    inventory = {'all': {'vars': dict({
        'ansible_connection': 'local',
        'ansible_python_interpreter': PYTHON,
        'upgrade_profile': builder.PROFILE,
        'upgrade_site': 'lab',
        'upgrade_target_version': builder.NEW_VERSION,
        'upgrade_artifact_dir': os.path.join(root, 'releases'),
        'upgrade_python': PYTHON,
        'upgrade_report_dir': os.path.join(root, 'reports'),
    }, **builder.inventory_vars(root), **{
        'upgrade_state_dir': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/state',
        'upgrade_backup_dir': '{{ upgrade_lab_hosts }}/{{ inventory_hostname }}/backups',
        'upgrade_lab_hosts': os.path.join(root, 'hosts'),
    }), 'children': {'servers': {'hosts': {}}, 'clients': {'hosts': {}}}}}
    if db == 'postgresql':
        site.pg = dict(labkit.start_postgres(root), password=secrets.token_urlsafe(18))
    server_hosts = inventory['all']['children']['servers']['hosts']
    server_names = ['server%d' % i for i in range(1, servers + 1)]
    for index, name in enumerate(server_names):
        server_hosts[name] = builder.install_server(site, name, index)
    for i in range(1, clients + 1):
        server = server_names[(i - 1) % len(server_names)]
        client_vars = builder.install_client(site, 'client%d' % i, i, server, server_hosts[server])
        if client_vars is not None:  # None: not an inventory host (ConAktiv's clients are user sessions)
            inventory['all']['children']['clients']['hosts']['client%d' % i] = client_vars
    inv_dir = os.path.join(root, 'inventory')
    os.makedirs(inv_dir)
    inv = os.path.join(inv_dir, 'hosts.yml')
    with open(inv + '.tmp', 'w', encoding='utf-8') as handle:
        handle.write('# generated by lab/build_lab.py\n')
        json.dump(inventory, handle, indent=2)
        handle.write('\n')
    os.replace(inv + '.tmp', inv)
    return inv


def lab_pids(root):
    """The PIDs the lab keeps: every supervisord and the PostgreSQL postmaster (whether alive or not)."""
    state = postgres_state(os.path.abspath(root))
    return labkit.supervisord_pids(os.path.abspath(root)) + ([state['pid']] if state else [])


def _ssh_hosts():
    import ssh_hosts  # pylint: disable=import-outside-toplevel,import-error
    return ssh_hosts


def teardown(root=DEFAULT_ROOT, quiet=False, remove=True):
    """Stop the lab's sshd, every supervisord and its PostgreSQL (by the PIDs it keeps) and delete the lab folder."""
    root = os.path.abspath(root)
    if os.path.isdir(os.path.join(root, 'ssh')):
        _ssh_hosts().disable(root)
    labkit.stop_supervisords(root)
    labkit.stop_postgres(root)       # after the services, which are its clients
    for product in PRODUCTS:         # what a product's builder started besides (ConAktiv: the vendor's FTP server)
        builder = product_builder(product)
        if hasattr(builder, 'teardown'):
            builder.teardown(root)
    if remove and os.path.isdir(root):
        if not any(os.path.exists(os.path.join(root, p)) for p in (MARKER, 'inventory/hosts.yml')) and os.listdir(root):
            raise SystemExit('%s does not look like a lab folder; not deleting it' % root)
        shutil.rmtree(root)
    if not quiet:
        print('lab under %s torn down' % root)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=DEFAULT_ROOT)
    parser.add_argument('--product', choices=PRODUCTS, default=PRODUCTS[0],
                        help='the stand-in product, a folder lab/<product>/ (default: %(default)s)')
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
                        help="rebuild the product's new release (PMOD: %s) with a migration that fails" % NEW_VERSION)
    args = parser.parse_args(argv)
    if args.teardown:
        teardown(args.root)
    elif args.broken_migration:
        builder = product_builder(args.product)
        print(builder.make_release(os.path.abspath(args.root), builder.NEW_VERSION, broken=True))
    else:
        try:
            inventory = build(args.root, clients=args.clients, servers=args.servers, rows=args.rows, db=args.db,
                              dicom=args.dicom, payload_mb=args.payload_mb, ssh=args.ssh, product=args.product)
        except RuntimeError as exc:
            print('build_lab.py: the lab was not built: %s' % exc, file=sys.stderr)
            return 1
        print(inventory)
    return 0


if __name__ == '__main__':
    sys.exit(main())
