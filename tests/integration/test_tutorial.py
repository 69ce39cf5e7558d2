"""The tutorial docs/NEW_PRODUCT.md, run: its profile (tests/integration/files/archive.yml) upgrades a product that is none
of the four shipped ones, end to end, on a site built here.

The product "Archive" is Debian's real Orthanc (one supervisord program, its JSON config inside the installation) with
a catalogue database in a real PostgreSQL 15 cluster (the lab's helpers start it).  Stand-ins: the release tarballs
(Orthanc's binary is the system's; a release carries the config defaults, the VERSION file and SQL migrations).
Everything is started in a temporary folder on free loopback ports and stopped by PID (build_lab.teardown).
"""
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import labkit  # noqa: E402  pylint: disable=wrong-import-position,import-error
import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PROFILE = os.path.join(HERE, 'files', 'archive.yml')
TUTORIAL = os.path.join(ROOT, 'docs', 'NEW_PRODUCT.md')
PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}
OLD, NEW = '1.0.0', '1.1.0'
SITE_AET = 'ARCHIVE_RAD'

DEFAULTS = {
    'Name': 'Archive', 'DicomServerEnabled': True, 'DicomAet': 'ARCHIVE', 'DicomPort': 4242,
    'DicomCheckCalledAet': True, 'DicomAlwaysAllowEcho': True, 'DicomCheckModalityHost': False, 'DicomModalities': {},
    'HttpServerEnabled': False, 'RemoteAccessAllowed': False, 'Plugins': [], 'LuaScripts': [], 'ConcurrentJobs': 1,
    'StorageDirectory': 'OrthancStorage', 'IndexDirectory': 'OrthancStorage', 'TemporaryDirectory': 'OrthancTmp',
}
CONFIG = {OLD: DEFAULTS, NEW: dict(DEFAULTS, ConcurrentJobs=2, StableAge=30)}  # 1.1.0: a new default and a new key
MIGRATIONS = {
    OLD: {'V1.0.0__catalogue.sql': '-- phase: offline\nCREATE TABLE archive_catalogue (study_uid TEXT PRIMARY KEY);\n'},
    NEW: {'V1.1.0__study_notes.sql': '-- phase: offline\n'
                                     'CREATE TABLE archive_study_notes (study_uid TEXT PRIMARY KEY, note TEXT NOT NULL);\n'},
}


def release(root, version):
    """releases/archive-<version>.tar.gz and its .sha256."""
    files = {'VERSION': '%s\n' % version, 'config/orthanc.json': json.dumps(CONFIG[version], indent=2) + '\n'}
    for version_seen in (OLD, NEW):
        if version_seen <= version:
            files.update({'sql/' + name: sql for name, sql in MIGRATIONS[version_seen].items()})
    folder = os.path.join(root, 'releases')
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, 'archive-%s.tar.gz' % version)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name in sorted(files):
            data = files[name].encode()
            info = tarfile.TarInfo('archive-%s/%s' % (version, name))
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    with open(path, 'wb') as handle:
        handle.write(buf.getvalue())
    with open(path + '.sha256', 'w', encoding='ascii') as handle:
        handle.write('%s  %s\n' % (hashlib.sha256(buf.getvalue()).hexdigest(), os.path.basename(path)))
    return path


class Site:
    """One archive server: Orthanc under supervisord, its catalogue in PostgreSQL."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root)
        os.chmod(root, 0o755)
        with open(os.path.join(root, build_lab.MARKER), 'w', encoding='ascii') as handle:
            handle.write('tutorial site\n')
        self.base = os.path.join(root, 'hosts', 'server1')
        self.install = os.path.join(self.base, 'opt', 'archive')
        for sub in ('backups', 'state', 'logs', 'supervisor', 'orthanc/storage', 'orthanc/tmp'):
            os.makedirs(os.path.join(self.base, sub))
        with tarfile.open(release(root, OLD)) as tar:  # the vendor's installer: unpack, the top folder becomes the root
            tar.extractall(os.path.dirname(self.install), filter='data')
        os.rename(os.path.join(os.path.dirname(self.install), 'archive-%s' % OLD), self.install)
        release(root, NEW)
        self.port = procs.free_port()
        self.config_path = os.path.join(self.install, 'config', 'orthanc.json')
        site = dict(CONFIG[OLD], Name='Archive of the radiology department', DicomAet=SITE_AET, DicomPort=self.port,
                    StorageDirectory=os.path.join(self.base, 'orthanc', 'storage'),
                    IndexDirectory=os.path.join(self.base, 'orthanc', 'storage'),
                    TemporaryDirectory=os.path.join(self.base, 'orthanc', 'tmp'))
        with open(self.config_path, 'w', encoding='utf-8') as handle:
            json.dump(site, handle, indent=2)
        self.pg = labkit.start_postgres(root)
        self.password = secrets.token_urlsafe(18)
        build_lab.product_builder('pmod').make_pg_database(self.pg, 'archive', self.password, rows=50)
        self.supervisor_config = labkit.supervise(self.base, [('archive-orthanc', '%s %s' % (labkit.ORTHANC, self.config_path))])
        procs.wait_port(self.port, log=os.path.join(self.base, 'logs', 'archive-orthanc.log'))
        self.inventory = os.path.join(root, 'inventory', 'hosts.yml')
        os.makedirs(os.path.dirname(self.inventory))
        inventory = {'all': {'vars': {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable, 'upgrade_python': sys.executable,
            'upgrade_profile_file': PROFILE, 'upgrade_site': 'tutorial', 'upgrade_target_version': NEW,
            'upgrade_artifact_dir': os.path.join(root, 'releases'), 'upgrade_report_dir': os.path.join(root, 'reports'),
        }, 'children': {'clients': {'hosts': {}}, 'servers': {'hosts': {'server1': {
            'upgrade_install_root': self.install, 'upgrade_state_dir': os.path.join(self.base, 'state'),
            'upgrade_backup_dir': os.path.join(self.base, 'backups'), 'upgrade_supervisor_config': self.supervisor_config,
            'archive_dicom_port': self.port, 'archive_aet': SITE_AET, 'archive_db_name': 'archive',
            'archive_db_host': self.pg['host'], 'archive_db_port': self.pg['port'], 'archive_db_user': build_lab.product_builder('pmod').PG_ROLE,
            'archive_db_password': self.password}}}}}}
        with open(self.inventory, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(inventory, handle)

    def version(self):
        with open(os.path.join(self.install, 'VERSION'), encoding='ascii') as handle:
            return handle.read().strip()

    def config(self):
        with open(self.config_path, encoding='utf-8') as handle:
            return json.load(handle)

    def tables(self):
        import psycopg  # pylint: disable=import-outside-toplevel
        with psycopg.connect(host=self.pg['host'], port=self.pg['port'], user=build_lab.product_builder('pmod').PG_ROLE, password=self.password,
                             dbname='archive') as conn:
            return sorted(r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))

    def echo(self):
        from pynetdicom import AE  # pylint: disable=import-outside-toplevel
        ae = AE(ae_title='TUTORIAL')
        ae.add_requested_context('1.2.840.10008.1.1')
        assoc = ae.associate('127.0.0.1', self.port, ae_title=SITE_AET)
        try:
            return assoc.is_established and assoc.send_c_echo().Status == 0
        finally:
            if assoc.is_established:
                assoc.release()

    def orthanc_command(self):
        out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c', self.supervisor_config,
                              'status', 'archive-orthanc'], capture_output=True, text=True, check=False)
        return out.stdout

    def report(self):
        folder = os.path.join(self.root, 'reports')
        name = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))[-1][1]
        with open(os.path.join(folder, name), encoding='utf-8') as handle:
            return json.load(handle)

    def run(self, check=False):
        return run_playbook(PLAYBOOK, inventory=self.inventory, check=check, env=ENV, timeout=900)


@pytest.fixture
def site():
    missing = build_lab.missing_prerequisites(db='postgresql', dicom='orthanc')
    if missing:
        pytest.skip('; '.join(missing))
    # under /tmp, searchable by others: pytest's tmp_path (0700) is closed to the postgres user
    parent = tempfile.mkdtemp(prefix='clinops-tutorial-')
    os.chmod(parent, 0o755)
    root = os.path.join(parent, 'site')
    try:
        yield Site(root)
    finally:
        try:
            build_lab.teardown(root, quiet=True)
        finally:
            shutil.rmtree(parent, ignore_errors=True)


def test_the_tutorial_shows_the_profile_the_test_runs():
    with open(TUTORIAL, encoding='utf-8') as handle:
        doc = handle.read()
    found = re.search(r'<!-- profile: tests/integration/files/archive.yml -->\n```yaml\n(.*?)```\n', doc, re.S)
    assert found, 'docs/NEW_PRODUCT.md has no profile block'
    with open(PROFILE, encoding='utf-8') as handle:
        assert found.group(1) == handle.read()


def test_the_tutorial_product_is_upgraded_end_to_end(site):
    assert site.version() == OLD and site.echo()
    plan = site.run(check=True)
    assert plan.rc == 0, plan
    assert site.version() == OLD

    result = site.run()
    assert result.rc == 0, result
    assert site.version() == NEW
    config = site.config()
    # site values carried over; the new release's new default and new key taken
    assert config['DicomAet'] == SITE_AET and config['DicomPort'] == site.port
    assert config['Name'] == 'Archive of the radiology department'
    assert config['StorageDirectory'] == os.path.join(site.base, 'orthanc', 'storage')
    assert config['ConcurrentJobs'] == 2 and config['StableAge'] == 30
    # the offline migration ran once, recorded in the history table; the baseline was adopted, not run
    tables = site.tables()
    assert 'archive_study_notes' in tables and 'clinops_schema_history' in tables
    assert 'archive_catalogue' not in tables
    assert os.listdir(os.path.join(site.base, 'backups'))
    assert 'RUNNING' in site.orthanc_command()
    assert site.echo()
    report = site.report()
    assert report['profile'] == 'archive' and report['profile_status'] == 'complete'
    assert [h['result'] for h in report['hosts']] == ['upgraded']

    again = site.run()
    assert again.rc == 0, again
    assert site.report()['nothing_to_do'] is True
