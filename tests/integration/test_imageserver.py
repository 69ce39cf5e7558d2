"""ClearCanvas ImageServer end to end: playbooks/upgrade.yml with profiles/imageserver.yml on the lab that
``lab/build_lab.py --product imageserver`` builds (the stand-in installer, ShredHostService and web interface, a real
pynetdicom archive, the lab's real PostgreSQL standing in for SQL Server, real supervisord).

One lab per module (building it takes a while); every test starts from the same state: the lab is reset to the
snapshot taken after the build (the database re-created from a template copy, the installation, registry and
filesystems copied back, the journal, backups and reports emptied, the services started again).
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from labtools import ENV, PLAYBOOK  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import labkit  # noqa: E402  pylint: disable=wrong-import-position,import-error
import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error
from imageserver import build as is_build  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

psycopg = pytest.importorskip('psycopg')
pytestmark = pytest.mark.skipif(bool(labkit.missing_prerequisites('postgresql')), reason='needs PostgreSQL 15 and psycopg')

SNAPSHOT_DB = 'imageserver_snapshot'


class ImageServerLab:
    def __init__(self, root, inventory):
        self.root = root
        self.inventory = inventory
        with open(inventory, encoding='utf-8') as handle:
            handle.readline()
            self.inv = json.load(handle)
        self.server = self.inv['all']['children']['servers']['hosts']['server1']
        self.base = os.path.join(root, 'hosts', 'server1')
        self.install = os.path.join(self.base, 'opt', 'ImageServer')
        self.pg = labkit.postgres_state(root)
        self.snapshot_dir = os.path.join(root, 'snapshot')

    # -- reading the site ------------------------------------------------------------------------------------------
    def db(self):
        s = self.server
        return psycopg.connect(host=s['imageserver_db_host'], port=s['imageserver_db_port'], user=s['imageserver_db_user'],
                               password=s['imageserver_db_password'], dbname=s['imageserver_db_name'], autocommit=True)

    def identity(self):
        with labkit.pg_admin(self.pg) as conn:
            return conn.execute('SELECT oid::bigint, xmin::text FROM pg_database WHERE datname = %s',
                                (self.server['imageserver_db_name'],)).fetchone()

    def rows(self):
        with self.db() as conn:
            tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                                                 "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
            return dict((t, conn.execute('SELECT count(*) FROM %s' % t).fetchone()[0]) for t in tables)

    def sql(self, statement, args=()):
        with self.db() as conn:
            cur = conn.execute(statement, args)
            return cur.fetchall() if cur.description else None

    def columns(self, table):
        return [r[0] for r in self.sql('SELECT column_name FROM information_schema.columns WHERE table_name = %s', (table,))]

    def version(self):
        with open(os.path.join(self.install, 'Version.txt'), encoding='ascii') as handle:
            return handle.read().strip()

    def registry(self):
        with open(os.path.join(self.base, 'registry', 'ImageServer.json'), encoding='utf-8') as handle:
            return json.load(handle)

    def ctl(self, what):
        return subprocess.run([sys.executable, os.path.join(self.install, 'bin', 'isctl.py'), what], capture_output=True,
                              text=True, check=False).stdout.strip()

    def supervisorctl(self, *args):
        return subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c',
                               self.server['upgrade_supervisor_config']] + list(args), capture_output=True, text=True, check=False)

    def pids(self):
        """{program: its pid, or its state when not running}, as supervisord reports them."""
        found = {}
        for line in self.supervisorctl('status').stdout.splitlines():
            words = line.split()
            if words:
                found[words[0]] = words[3].rstrip(',') if words[1] == 'RUNNING' else words[1]
        return found

    def journal(self):
        path = os.path.join(self.base, 'state', 'journal.jsonl')
        if not os.path.exists(path):
            return []
        with open(path, encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def report(self):
        names = sorted(glob.glob(os.path.join(self.root, 'reports', '*.json')), key=os.path.getmtime)
        with open(names[-1], encoding='utf-8') as handle:
            return json.load(handle)

    def host_report(self):
        return self.report()['hosts'][0]

    def study_xml_versions(self):
        found = {}
        for path in glob.glob(os.path.join(self.base, 'fs', 'fs*', '*', '*.xml')):
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
            found[os.path.basename(path)] = text.split('<StudyXml version="', 1)[1].split('"', 1)[0]
        return found

    def run(self, check=False, extra_vars=None):
        return run_playbook(PLAYBOOK, inventory=self.inventory, check=check, env=ENV, timeout=1500, extra_vars=extra_vars)

    # -- snapshot and reset ----------------------------------------------------------------------------------------
    def stop_services(self):
        self.supervisorctl('stop', 'all')

    def start_services(self):
        self.supervisorctl('start', 'all')
        for port in self.server['imageserver_ports'].values():
            procs.wait_port(port, timeout=60)
        for dummy in range(is_build.OPEN_SESSIONS):
            subprocess.run([sys.executable, '-c', 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=10).read()',
                            'http://127.0.0.1:%d/login' % self.server['imageserver_ports']['web']], check=True)

    def _copy_db(self, source, target):
        from psycopg import sql  # pylint: disable=import-outside-toplevel
        with labkit.pg_admin(self.pg) as conn:
            conn.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN (%s, %s) AND pid <> pg_backend_pid()',
                         (source, target))
            conn.execute(sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(target)))
            conn.execute(sql.SQL('CREATE DATABASE {} TEMPLATE {} OWNER {}').format(
                sql.Identifier(target), sql.Identifier(source), sql.Identifier(is_build.PG_ROLE)))

    def _folders(self):
        return {'opt': os.path.join(self.base, 'opt'), 'registry': os.path.join(self.base, 'registry'),
                'fs': os.path.join(self.base, 'fs')}

    def snapshot(self):
        self.stop_services()
        self._copy_db(self.server['imageserver_db_name'], SNAPSHOT_DB)
        for name, path in self._folders().items():
            shutil.copytree(path, os.path.join(self.snapshot_dir, name), symlinks=True)
        self.start_services()

    def reset(self, reconcile=0, integrity=0, other=0, paused=False, future_reconcile=0):
        """The lab as built, with these queue entries pending (``paused``: the ShredHostService leaves them alone
        until :meth:`release` is called; ``future_reconcile``: Reconcile entries scheduled in a year, never processed)."""
        self.stop_services()
        self._copy_db(SNAPSHOT_DB, self.server['imageserver_db_name'])
        for name, path in self._folders().items():
            shutil.rmtree(path)
            shutil.copytree(os.path.join(self.snapshot_dir, name), path, symlinks=True)
        for folder in ('state', 'backups', 'tmp'):
            shutil.rmtree(os.path.join(self.base, folder))
            os.makedirs(os.path.join(self.base, folder))
        shutil.rmtree(self.install + '_staging', ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, 'reports'), ignore_errors=True)
        is_build.make_releases(self.root)
        self.sql('DELETE FROM WorkQueue')
        self.sql('DELETE FROM StudyIntegrityQueue')
        for i in range(reconcile):
            self.sql("INSERT INTO WorkQueue (WorkQueueTypeEnum, StudyKey) VALUES ('ReconcileStudy', %s)", (i + 1,))
        for i in range(future_reconcile):
            self.sql("INSERT INTO WorkQueue (WorkQueueTypeEnum, StudyKey, ScheduledTime) "
                     "VALUES ('ReconcileStudy', %s, now() + interval '1 year')", (i + 1,))
        for i in range(other):
            self.sql("INSERT INTO WorkQueue (WorkQueueTypeEnum, StudyKey) VALUES ('StudyProcess', %s)", (i + 1,))
        for i in range(integrity):
            self.sql("INSERT INTO StudyIntegrityQueue (StudyKey, Reason) VALUES (%s, 'InconsistentData')", (i + 1,))
        pause = os.path.join(self.base, 'run', 'shred.pause')
        if paused:
            with open(pause, 'w', encoding='ascii') as handle:
                handle.write('held by the test\n')
        elif os.path.exists(pause):
            os.unlink(pause)
        self.start_services()

    def release(self):
        os.unlink(os.path.join(self.base, 'run', 'shred.pause'))

    def queue_counts(self):
        return (self.sql('SELECT count(*) FROM StudyIntegrityQueue')[0][0],
                self.sql("SELECT count(*) FROM WorkQueue WHERE WorkQueueTypeEnum = 'ReconcileStudy'")[0][0])

    def state_hash(self):
        """Every file of the host except logs, supervisord's and the shred's runtime files, plus the database's rows."""
        digest = {}
        for base, dirs, files in os.walk(self.base):
            dirs[:] = sorted(d for d in dirs if d not in ('logs', 'supervisor', 'run', '__pycache__'))
            for name in sorted(files):
                with open(os.path.join(base, name), 'rb') as handle:
                    digest[os.path.relpath(os.path.join(base, name), self.base)] = hash(handle.read())
        return digest, self.rows(), self.identity()


@pytest.fixture(scope='module')
def lab_built():
    # under /tmp, searchable by others: pytest's tmp_path (0700) is closed to the postgres user
    parent = tempfile.mkdtemp(prefix='clinops-lab-imageserver-')
    os.chmod(parent, 0o755)
    root = os.path.join(parent, 'lab')
    try:
        inventory = build_lab.build(root, servers=1, rows=3000, quiet=True, product='imageserver')
        lab = ImageServerLab(root, inventory)
        lab.snapshot()
        yield lab
    finally:
        build_lab.teardown(root, quiet=True)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def lab(lab_built):
    lab_built.reset()
    return lab_built


def entries(journal, step=None, result=None):
    return [e for e in journal if (step is None or e['step'] == step) and (result is None or e['result'] == result)]


def test_check_mode_prints_the_installer_plan_and_changes_nothing(lab):
    before, pids = lab.state_hash(), lab.pids()
    result = lab.run(check=True)
    assert result.rc == 0, result
    out = result.stdout
    assert 'layout: installer - ' in out and 'ImageServer-2.0.0.tar.gz run unattended' in out
    assert 'queues to drain before the stop: Study Integrity Queue, WorkQueue Reconcile entries' in out
    assert 'after the verified start (not in the downtime): Rebuild the Study XML files' in out
    assert 'estimated downtime: ' in out
    plan = lab.host_report()['plan']
    assert plan['layout'] == 'installer' and plan['kind'] == 'major'
    assert plan['stop_order'] == ['imageserver-web', 'imageserver-shred', 'imageserver-dicom']
    assert float(plan['estimated_downtime_s']) > 0
    assert lab.state_hash() == before and lab.pids() == pids
    assert lab.journal() == []


def test_full_upgrade_drains_the_queues_first_then_a_rerun_changes_nothing(lab):
    lab.reset(reconcile=3, integrity=2, other=2, paused=True)
    identity, rows_before = lab.identity(), lab.rows()
    pids = lab.pids()
    box = {}
    runner = threading.Thread(target=lambda: box.update(result=lab.run()))
    runner.start()
    try:
        # the drain is observed waiting: the queues step journals the counts, and nothing is stopped meanwhile
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and not entries(lab.journal(), 'queues', 'progress') and runner.is_alive():
            time.sleep(0.5)
        waiting = entries(lab.journal(), 'queues', 'progress')
        assert waiting and waiting[0]['message'] == 'waiting for the queues: Study Integrity Queue 2, WorkQueue Reconcile entries 3'
        time.sleep(3)
        assert not entries(lab.journal(), 'stop'), 'a service was stopped while the queues were not empty'
        assert lab.pids() == pids
    finally:
        lab.release()    # the ShredHostService works the entries off now
        runner.join()
    result = box['result']
    assert result.rc == 0, result
    journal = lab.journal()
    order = [(e['step'], e['result']) for e in journal if e['result'] != 'progress']
    # queues drained (counts falling to 0) before the first stop; the installer after the backup
    assert order.index(('queues', 'ok')) < order.index(('stop', 'started')) < order.index(('backup', 'ok')) \
        < order.index(('install', 'started')) < order.index(('verify', 'ok')) < order.index(('post_jobs', 'started'))
    counts = [[int(w.split()[-1]) for w in e['message'].split(': ', 1)[1].split(', ')]
              for e in entries(journal, 'queues', 'progress') if e['message'].startswith('waiting for the queues')]
    assert counts[0] == [2, 3] and counts[-1] == [0, 0], counts
    assert all(b <= a for earlier, later in zip(counts, counts[1:]) for a, b in zip(earlier, later)), counts  # falling
    assert lab.queue_counts() == (0, 0)
    # the installer ran, followed into the journal; the versions
    installer_lines = [e['message'] for e in entries(journal, 'install', 'progress')]
    assert any('answer: No (keep it)' in line for line in installer_lines)
    assert any('Progress 100%' in line for line in installer_lines)
    assert lab.version() == '2.0.0' and lab.registry()['version'] == '2.0.0'
    assert lab.ctl('schema') == 'OK schema=2.0.0 release=2.0.0'
    # the same database, no rows lost but the alerts (which the release notes list)
    assert lab.identity() == identity
    rows_after = lab.rows()
    assert rows_after['alert'] == 0 and rows_before['alert'] == 30
    for table in ('study', 'filesystem', 'device'):
        assert rows_after[table] == rows_before[table] > 0
    assert 'servicelock' in rows_after and 'studysizeinkb' in lab.columns('study')
    # web interface and ShredHostService stopped and started again, saying how many sessions were open
    stop = entries(journal, 'stop', 'ok')[0]['data']
    assert stop['stop_order'] == ['imageserver-web', 'imageserver-shred', 'imageserver-dicom']
    assert stop['web_sessions_open'] == 2
    assert any('2 session(s) open' in e['message'] for e in entries(journal, 'stop', 'progress'))
    new_pids = lab.pids()
    assert all(new_pids[name] != pids[name] for name in pids), (pids, new_pids)
    assert lab.ctl('web') == 'OK ClearCanvas ImageServer 2.0.0'
    assert lab.ctl('shred').startswith('OK ShredHostService 2.0.0 running')
    # the Study XML files rebuilt after the verified start, progress in the journal and the report
    versions = lab.study_xml_versions()
    assert len(versions) == rows_before['study'] and set(versions.values()) == {'2.0.0'}
    progress = [e['message'] for e in entries(journal, 'post_jobs', 'progress')]
    assert progress[-1].endswith('%d/%d files' % (rows_before['study'], rows_before['study'])), progress
    report = lab.host_report()
    assert report['result'] == 'upgraded' and report['from_version'] == '1.3.0' and report['installed_version'] == '2.0.0'
    assert report['post_jobs'][0]['result'] == 'ok'
    assert report['post_jobs'][0]['progress']['done'] == report['post_jobs'][0]['progress']['total'] == rows_before['study']
    assert float(report['downtime_s']) > 0
    verify_end = entries(journal, 'verify', 'ok')[0]['ended']
    assert entries(journal, 'post_jobs', 'started')[0]['started'] >= verify_end   # not in the downtime
    assert journal[-1]['result'] == 'upgraded'

    # the ShredHostService goes on with the other WorkQueue entries: let it finish before the rerun is compared
    deadline = time.monotonic() + 120
    while lab.sql('SELECT count(*) FROM WorkQueue')[0][0] and time.monotonic() < deadline:
        time.sleep(0.5)
    state = lab.state_hash()
    result = lab.run()
    assert result.rc == 0, result
    for host in ('server1', 'localhost'):
        assert result.stats[host]['changed'] == 0, (host, result.stats[host])
    assert lab.report()['nothing_to_do'] is True
    assert lab.state_hash()[1:] == state[1:]


def test_a_queue_that_never_empties_fails_with_the_counts_left_and_nothing_stopped(lab):
    lab.reset(integrity=0, future_reconcile=1)
    pids, identity, rows = lab.pids(), lab.identity(), lab.rows()
    result = lab.run(extra_vars={'server_upgrade_queues_max_wait': 6})
    assert result.rc != 0
    report = lab.host_report()
    assert report['result'] == 'failed', report
    assert 'WorkQueue Reconcile entries 1 left' in report['message'] and 'nothing was stopped' in report['message']
    journal = lab.journal()
    assert entries(journal, 'queues', 'failed') and not entries(journal, 'stop')
    assert journal[-1]['result'] == 'failed'
    assert lab.pids() == pids
    assert lab.version() == '1.3.0' and lab.identity() == identity and lab.rows() == rows
    assert not os.path.exists(os.path.join(lab.base, 'state', 'upgrade.lock'))


def test_an_installer_that_drops_the_database_is_caught_and_rolled_back(lab):
    rows = lab.rows()
    args = [a for a in is_build.INSTALLER_ARGS if a not in ('--keep-database', 'yes')]   # the question left unanswered
    result = lab.run(extra_vars={'imageserver_installer_args': args})
    assert result.rc != 0
    report = lab.host_report()
    assert report['result'] == 'rolled_back', report
    assert 'was replaced (dropped and created again)' in report['message'] and 'lost rows' in report['message']
    assert 'the prior version 1.3.0 was installed again with' in report['message']
    assert 'the database was restored from' in report['message']
    installer_lines = [e['message'] for e in entries(lab.journal(), 'install', 'progress')]
    assert any('answer: none given' in line for line in installer_lines)
    # the prior version, its database restored with every row, its services answering
    assert lab.version() == '1.3.0' and lab.registry()['version'] == '1.3.0'
    assert lab.ctl('schema') == 'OK schema=1.3.0 release=1.3.0'
    assert lab.rows() == rows
    assert lab.ctl('web') == 'OK ClearCanvas ImageServer 1.3.0'
    assert lab.ctl('shred').startswith('OK ShredHostService 1.3.0 running')
    assert lab.journal()[-1]['result'] == 'rolled_back'


def test_a_failing_installer_rolls_back_to_the_prior_version(lab):
    is_build.make_release(lab.root, is_build.NEW_VERSION, broken='schema')
    rows = lab.rows()
    result = lab.run()
    assert result.rc != 0
    report = lab.host_report()
    assert report['result'] == 'rolled_back', report
    assert 'exited with code 3' in report['message'] and 'deadlock victim' in report['message']
    assert lab.version() == '1.3.0'
    assert lab.ctl('schema') == 'OK schema=1.3.0 release=1.3.0'
    assert 'studysizeinkb' not in lab.columns('study')       # the half-done schema upgrade undone by the restore
    assert lab.rows() == rows
    assert lab.ctl('web') == 'OK ClearCanvas ImageServer 1.3.0'
    assert lab.journal()[-1]['result'] == 'rolled_back'
    assert os.path.exists(os.path.join(lab.base, 'state', 'installer-rollback-2.0.0-1.log'))


def test_preflight_refuses_a_major_upgrade_without_the_prior_installer(lab):
    before, pids = lab.state_hash(), lab.pids()
    result = lab.run(check=True, extra_vars={'upgrade_prior_installer': os.path.join(lab.root, 'releases', 'missing.tar.gz')})
    assert result.rc != 0
    assert 'preflight refused server1' in result.stdout
    assert "the prior version's installer" in result.stdout and 'upgrade_without_rollback' in result.stdout
    assert lab.state_hash() == before and lab.pids() == pids
