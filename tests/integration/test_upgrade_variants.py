"""End to end on the lab's variants: PostgreSQL 15 instead of SQLite, Orthanc 1.10 instead of the pynetdicom stand-in.

playbooks/upgrade.yml runs (through harness.run_playbook) on a lab built with ``db='postgresql', dicom='orthanc'``:
the lab's own PostgreSQL cluster (Debian's binaries, as the postgres user) holds the server's database, and the
supervisor program pmod-ds runs Debian's Orthanc.  Each test builds its own lab and tears it down in a finaliser,
which then checks that no process the lab started (supervisord and its services, the postmaster and its
backends) is left alive.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

psycopg = pytest.importorskip('psycopg')
pynetdicom = pytest.importorskip('pynetdicom')
from pynetdicom.pdu import A_ASSOCIATE_RJ  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}
HISTORY = 'clinops_schema_history'

MISSING = build_lab.missing_prerequisites(db='postgresql', dicom='orthanc')
pytestmark = pytest.mark.skipif(bool(MISSING), reason='; '.join(MISSING))


# ---------------------------------------------------------------------------------------------- processes

def _stat(pid):
    """(state, parent PID) of ``pid``, or None when it is gone."""
    try:
        with open('/proc/%d/stat' % pid, encoding='ascii', errors='replace') as handle:
            fields = handle.read().rsplit(') ', 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def alive(pid):
    stat = _stat(pid)
    return stat is not None and stat[0] != 'Z'


def with_descendants(pids):
    """``pids`` and every process below them (supervisord's services, the postmaster's backends)."""
    parents = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                parents[int(name)] = stat[1]
    found = set(pids)
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


# ---------------------------------------------------------------------------------------------- the lab

@pytest.fixture
def lab(request):
    # under /tmp, searchable by others: pytest's tmp_path (0700) is closed to the postgres user
    root = tempfile.mkdtemp(prefix='clinops-lab-variants-')
    os.chmod(root, 0o755)

    def finish():
        started = with_descendants([pid for pid in build_lab.lab_pids(root) if alive(pid)])
        try:
            build_lab.teardown(root, quiet=True)
        except SystemExit:      # a build that failed before writing its inventory: its processes are stopped
            pass
        finally:
            shutil.rmtree(root, ignore_errors=True)
        left = sorted(pid for pid in started | set(build_lab.lab_pids(root)) if alive(pid))
        assert not left, 'processes of the lab still alive after the teardown: %s' % left
        assert not os.path.exists(root)

    request.addfinalizer(finish)
    inventory = build_lab.build(root, clients=1, servers=1, rows=3000, quiet=True, db='postgresql', dicom='orthanc')
    return Lab(root, inventory)


class Lab:
    def __init__(self, root, inventory):
        self.root = root
        self.inventory = inventory
        with open(inventory, encoding='utf-8') as handle:
            handle.readline()
            self.inv = json.load(handle)
        self.server = self.inv['all']['children']['servers']['hosts']['server1']
        self.hosts = ['server1', 'client1']

    def install(self, host):
        return os.path.join(self.root, 'hosts', host, 'opt', 'PMOD')

    def version(self, host):
        with open(os.path.join(self.install(host), 'VERSION'), encoding='ascii') as handle:
            return handle.read().strip()

    def ctl(self, what, host='server1'):
        inst = self.install(host)
        proc = subprocess.run([sys.executable, os.path.join(inst, 'bin', 'pmodctl.py'), what, '--properties',
                               os.path.join(inst, 'properties', 'Config.properties')], capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def properties(self, host, name='Config.properties'):
        return build_lab.read_properties(os.path.join(self.install(host), 'properties', name))

    def run(self, **kwargs):
        return run_playbook(PLAYBOOK, inventory=self.inventory, env=ENV, timeout=1200, **kwargs)

    def report(self):
        """The last run's JSON report."""
        folder = os.path.join(self.root, 'reports')
        names = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))
        with open(os.path.join(folder, names[-1][1]), encoding='utf-8') as handle:
            return json.load(handle)

    def results(self):
        return {h['host']: h for h in self.report()['hosts']}

    def journal(self, host='server1'):
        path = os.path.join(self.root, 'hosts', host, 'state', 'journal.jsonl')
        if not os.path.exists(path):
            return []
        with open(path, encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]

    # -- PostgreSQL, reached the way the product reaches it: its role, its password, over TCP

    def connect(self, dbname=None):
        sv = self.server
        return psycopg.connect(host=sv['pmod_db_host'], port=sv['pmod_db_port'], user=sv['pmod_db_user'],
                               password=sv['pmod_db_password'], dbname=dbname or sv['pmod_db_name'], autocommit=True)

    def snapshot(self):
        """Every table of the database: its columns (name, type, nullability, default), row count and a content hash."""
        tables = {}
        with self.connect() as conn:
            names = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                " ORDER BY table_name")]
            for name in names:
                columns = conn.execute(
                    'SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns'
                    " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", (name,)).fetchall()
                order = ', '.join(str(i) for i in range(1, len(columns) + 1))
                digest = hashlib.sha256()
                count = 0
                for row in conn.execute('SELECT * FROM "%s" ORDER BY %s' % (name, order)):
                    digest.update(repr(tuple(row)).encode('utf-8'))
                    count += 1
                tables[name] = {'columns': columns, 'rows': count, 'sha256': digest.hexdigest()}
        return tables

    def query(self, sql, args=()):
        with self.connect() as conn:
            return conn.execute(sql, args).fetchall()

    def history(self):
        return [tuple(r) for r in self.query('SELECT version, phase, success FROM %s ORDER BY version' % HISTORY)]

    def indexes(self):
        return {r[0] for r in self.query("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}

    def databases(self):
        return sorted(r[0] for r in self.query('SELECT datname FROM pg_database WHERE NOT datistemplate'))

    def database_oid(self):
        return self.query('SELECT oid FROM pg_database WHERE datname = %s', (self.server['pmod_db_name'],))[0][0]

    # -- the DICOM node

    def ds_pid(self):
        out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c',
                              self.server['upgrade_supervisor_config'], 'pid', 'pmod-ds'], capture_output=True, text=True,
                             check=False)
        return int(out.stdout.strip())

    def ds_program(self):
        return os.readlink('/proc/%d/exe' % self.ds_pid())

    def c_echo(self, called_aet):
        """A C-ECHO to the server's DICOM port: 'success', or the peer's A-ASSOCIATE-RJ in words.

        The rejection is read from the PDUs the peer sent: when the peer closes the connection right after
        its A-ASSOCIATE-RJ (Orthanc does, within a millisecond), pynetdicom 3.0 sometimes sees the closed
        socket first and reports the association as aborted (about 1 in 100 here).
        """
        received = []
        ae = pynetdicom.AE(ae_title='CLINOPS_TEST')
        ae.add_requested_context('1.2.840.10008.1.1')   # Verification
        assoc = ae.associate('127.0.0.1', self.server['pmod_ports']['dicom'], ae_title=called_aet,
                             evt_handlers=[(pynetdicom.evt.EVT_PDU_RECV, lambda event: received.append(event.pdu))])
        if assoc.is_established:
            status = assoc.send_c_echo()
            assoc.release()
            return 'success' if status and status.Status == 0x0000 else 'failed: %r' % status
        rejections = [pdu for pdu in received if isinstance(pdu, A_ASSOCIATE_RJ)]
        if rejections:
            return 'rejected: %s' % rejections[0].reason_str
        return 'aborted' if assoc.is_aborted else 'no association'


WRONG_AET = 'NOT_PMOD_DS'
REJECTED = 'rejected: Called AE title not recognised'


def assert_orthanc_answers(lab):
    assert lab.ds_program() == build_lab.ORTHANC
    assert lab.c_echo(lab.server['pmod_dicom_aet']) == 'success'
    assert lab.c_echo(WRONG_AET) == REJECTED


# ---------------------------------------------------------------------------------------------- tests

def assert_built_as_asked(lab):
    """The lab as built: the database in PostgreSQL with the SQLite lab's rows, Orthanc as the DICOM node."""
    assert lab.server['pmod_db_engine'] == 'postgresql' and 'upgrade_db_path' not in lab.server
    assert lab.ctl('echo-db') == 'OK schema=4.3.0 studies=1500'
    tables = lab.snapshot()
    assert sorted(tables) == ['legacy_notes', 'patients', 'pmod_schema', 'series', 'studies']
    assert {t: tables[t]['rows'] for t in tables} == {'legacy_notes': 50, 'patients': 500, 'pmod_schema': 1,
                                                      'series': 3000, 'studies': 1500}
    # the rows are the SQLite lab's rows
    rows = build_lab.sample_rows(3000, 7)
    digest = hashlib.sha256()
    for row in sorted(rows['series']):
        digest.update(repr(tuple(row)).encode('utf-8'))
    assert tables['series']['sha256'] == digest.hexdigest()
    assert lab.query('SELECT name FROM patients WHERE id = 1') == [(rows['patients'][0][2],)]
    assert_orthanc_answers(lab)
    with open(os.path.join(lab.root, 'hosts', 'server1', 'orthanc', 'orthanc.json'), encoding='utf-8') as handle:
        config = json.load(handle)
    assert config['DicomAet'] == lab.properties('server1', 'Dicom.properties')['dicom.aet'] == 'PMOD_DS1'
    assert config['DicomPort'] == lab.server['pmod_ports']['dicom']
    assert config['StorageDirectory'].startswith(os.path.join(lab.root, 'hosts', 'server1') + os.sep)


def test_upgrade_on_postgresql_and_orthanc_then_rerun_changes_nothing(lab):
    assert_built_as_asked(lab)
    before = lab.snapshot()
    ds_before = lab.ds_pid()
    db_props = {k: v for k, v in lab.properties('server1').items() if k.startswith('db.')}

    result = lab.run()
    assert result.rc == 0, result
    for host in lab.hosts:
        assert lab.version(host) == build_lab.NEW_VERSION
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS 4.4.0')
    assert lab.ctl('echo-db') == 'OK schema=4.4.0 studies=1500'
    # the migrations ran in PostgreSQL, each in its phase
    assert lab.history() == [('4.3.0', 'baseline', True), ('4.3.1', 'pre', True), ('4.3.2', 'offline', True),
                             ('4.4.0', 'post', True)]
    after = lab.snapshot()
    assert sorted(after) == sorted(set(before) - {'legacy_notes'} | {HISTORY})
    assert [c[0] for c in after['studies']['columns']] == [c[0] for c in before['studies']['columns']] + ['status']
    assert lab.query('SELECT version FROM pmod_schema') == [('4.4.0',)]
    assert 'series_modality' in lab.indexes()
    assert lab.query("SELECT count(*) FROM studies WHERE status = 'new'") == \
        lab.query("SELECT count(*) FROM studies WHERE study_date >= '2024-01-01'")
    assert lab.query("SELECT count(*) FROM studies WHERE status NOT IN ('new', 'archived')") == [(0,)]
    for table in ('patients', 'series'):
        assert after[table] == before[table]
    assert after['studies']['rows'] == before['studies']['rows']
    # the site's database settings came over to the new installation
    assert {k: v for k, v in lab.properties('server1').items() if k.startswith('db.')} == db_props
    # the backup is a pg_dump of the database
    report = lab.results()
    assert report['server1']['result'] == 'upgraded' and report['client1']['result'] == 'upgraded'
    backups = os.listdir(os.path.join(lab.root, 'hosts', 'server1', 'backups'))
    assert [n for n in backups if n.startswith('postgresql_%s_pre-4.4.0_' % lab.server['pmod_db_name'])
            and n.endswith('.dump')], backups
    # Orthanc was stopped and started with the other services, and answers for the right AE title only
    assert lab.ds_pid() != ds_before
    assert_orthanc_answers(lab)
    assert lab.databases() == ['pmod_server1', 'postgres']

    snapshot, ds_pid = lab.snapshot(), lab.ds_pid()
    result = lab.run()
    assert result.rc == 0, result
    for host in lab.hosts + ['localhost']:
        assert result.stats[host]['changed'] == 0, (host, result.stats[host])
    assert lab.report()['nothing_to_do'] is True
    assert lab.snapshot() == snapshot
    assert lab.ds_pid() == ds_pid


def test_broken_migration_restores_the_postgresql_database_and_the_old_version(lab):
    build_lab.make_release(lab.root, build_lab.NEW_VERSION, broken=True)
    before = lab.snapshot()
    indexes, databases, oid = lab.indexes(), lab.databases(), lab.database_oid()
    props_file = os.path.join(lab.install('server1'), 'properties', 'Config.properties')
    with open(props_file, 'rb') as handle:
        props_before = handle.read()

    result = lab.run()
    assert result.rc != 0
    assert lab.version('server1') == lab.version('client1') == build_lab.OLD_VERSION
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS 4.3.0')
    assert lab.ctl('echo-db') == 'OK schema=4.3.0 studies=1500'
    assert_orthanc_answers(lab)
    # PostgreSQL rolled the failed migration's transaction back, and then the rollback replaced the database with
    # the pre-upgrade backup (restored into a new database, renamed over the old one): every table as it was
    # before the upgrade, columns, rows and content
    assert lab.database_oid() != oid
    after = lab.snapshot()
    assert {t: after.get(t) for t in before} == before
    # what the pre phase (before the stop, so before the backup) added is all that is new: its index and the history
    assert set(after) - set(before) == {HISTORY}
    assert lab.history() == [('4.3.0', 'baseline', True), ('4.3.1', 'pre', True)]
    assert lab.indexes() - indexes == {'series_modality', HISTORY + '_pkey'}
    assert lab.databases() == databases            # the restore's scratch and replaced databases are gone
    with open(props_file, 'rb') as handle:
        assert handle.read() == props_before
    report = lab.results()
    assert report['server1']['result'] == 'rolled_back'
    assert 'migrate_offline' in report['server1']['message'] and 'restored' in report['server1']['message']
    assert report['client1']['result'] == 'held_back'
    assert lab.journal()[-1]['result'] == 'rolled_back'
    assert not os.path.exists(os.path.join(lab.root, 'hosts', 'server1', 'state', 'upgrade.lock'))
