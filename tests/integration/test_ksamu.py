"""KSAMU end to end on the lab's real Firebird 3.0 (lab/build_lab.py --product ksamu): release channels, background
tasks stopped first and started again whatever happened, minor updates without downtime, major updates behind a
countdown warning and the product's database lock, the vendor's updater followed through its log, rollback.

One lab for the module (built once, reset between the cases: users logged on again with clean screens, background
tasks running). The cases run in order on it: 6.0.51.22965 -> 6.0.51.22966 (minor) -> 6.0.52.23001 (major; first a
broken build that rolls back, then the good one). The warning's minutes are shortened by
server_upgrade_warning_seconds_per_minute, as a site never would.
"""
import datetime
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from labtools import ENV, PLAYBOOK  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook, run_task  # noqa: E402  pylint: disable=wrong-import-position
from ksamu import build as ks_build  # noqa: E402  pylint: disable=wrong-import-position,import-error

OLD, MINOR, MAJOR, TEST_ONLY = ks_build.OLD_VERSION, ks_build.MINOR_VERSION, ks_build.NEW_VERSION, ks_build.TEST_VERSION
SECONDS_PER_MINUTE = 0.5


def stamp(text):
    return datetime.datetime.fromisoformat(text)


class KsamuLab:
    def __init__(self, root, inventory):
        self.root = root
        self.inventory = inventory
        with open(inventory, encoding='utf-8') as handle:
            handle.readline()
            self.inv = json.load(handle)
        self.server = self.inv['all']['children']['servers']['hosts']['server1']
        self.clients = self.inv['all']['children']['clients']['hosts']
        self.users = list(ks_build.USERS)     # every user logs on (the clients' and others)
        self.base = os.path.join(root, 'hosts', 'server1')

    def install(self, host='server1'):
        return os.path.join(self.root, 'hosts', host, 'opt', 'KSAMU')

    def version(self, host='server1'):
        with open(os.path.join(self.install(host), 'version.txt'), encoding='ascii') as handle:
            return handle.read().strip()

    def admin(self, *args):
        return ks_build.admin(self.server['ksamu_port'], *args)

    def query(self, sql):
        from firebird.driver import connect  # pylint: disable=import-outside-toplevel
        conn = connect('127.0.0.1/%d:%s' % (self.server['ksamu_db_port'], self.server['ksamu_db_path']), user='SYSDBA',
                       password=self.server['ksamu_db_password'])
        try:
            cur = conn.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def columns(self, table):
        return [r[0].strip() for r in self.query("SELECT RDB$FIELD_NAME FROM RDB$RELATION_FIELDS WHERE RDB$RELATION_NAME = '%s'" % table)]

    def screen(self, user):
        """What ``user`` was shown: [(time, text)]."""
        path = os.path.join(self.base, 'data', 'screens', user + '.txt')
        if not os.path.exists(path):
            return []
        with open(path, encoding='utf-8') as handle:
            return [(stamp(t), text) for t, text in (line.rstrip('\n').split('\t', 1) for line in handle if line.strip())]

    def server_pid(self):
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c',
                               self.server['upgrade_supervisor_config'], 'pid', 'ksamu-server'], capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def threads_stopped(self):
        with open(os.path.join(self.base, 'data', 'threads.json'), encoding='utf-8') as handle:
            return json.load(handle)['stopped']

    def journal(self):
        with open(os.path.join(self.base, 'state', 'journal.jsonl'), encoding='utf-8') as handle:
            entries = [json.loads(line) for line in handle if line.strip()]
        last = max(e['attempt'] for e in entries if e['target'] == entries[-1]['target'])
        return {e['step']: e for e in entries if e['target'] == entries[-1]['target'] and e['attempt'] == last
                and e['result'] != 'started'}

    def report(self):
        folder = os.path.join(self.root, 'reports')
        names = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))
        with open(os.path.join(folder, names[-1][1]), encoding='utf-8') as handle:
            return {h['host']: h for h in json.load(handle)['hosts']}

    def task_runs_between(self, start, end):
        """Background task runs that were going on at some moment between ``start`` and ``end``."""
        return [r for r in self.query('SELECT TASK, STARTED, ENDED FROM KS_TASK_RUNS')
                if stamp(r[1]) < end and stamp(r[2]) > start]

    def run(self, check=False, **extra):
        extra.setdefault('server_upgrade_warning_seconds_per_minute', SECONDS_PER_MINUTE)
        return run_playbook(PLAYBOOK, inventory=self.inventory, check=check, env=ENV, timeout=1200, extra_vars=extra)

    def reset(self):
        """Every user logged on (old client) with a clean screen, the background tasks running."""
        self.admin('tasks', 'start')
        for user in self.users:
            ks_build.login(self.server['ksamu_port'], user, OLD)
            open(os.path.join(self.base, 'data', 'screens', user + '.txt'), 'w', encoding='utf-8').close()


class Worker(threading.Thread):
    """A user working while the upgrade runs: one piece of work every 0.2 s, each answer kept with its time."""

    def __init__(self, lab, user):
        super().__init__(daemon=True)
        self.lab, self.user, self.answers, self.done = lab, user, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.answers.append((datetime.datetime.now(datetime.timezone.utc), self.lab.admin('work', self.user)))
            time.sleep(0.2)

    def stop(self):
        self.done.set()
        self.join(30)
        return [(t, a) for t, a in self.answers if a != ['OK']]


@pytest.fixture(scope='module')
def ksamu(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ksamu') / 'lab')
    inventory = build_lab.build(root, clients=1, servers=1, rows=300, quiet=True, product='ksamu')
    yield KsamuLab(root, inventory)
    build_lab.teardown(root, quiet=True)


@pytest.fixture
def lab(ksamu):
    ksamu.reset()
    return ksamu


def assert_tasks_stopped_first_and_started_again(lab, journal):
    stopped, started = stamp(journal['tasks_stop']['ended']), stamp(journal['tasks_start' if 'tasks_start' in journal else 'finish']['started'])
    assert journal['tasks_stop']['result'] == 'ok'
    first = min(stamp(e['started']) for s, e in journal.items() if s not in ('begin', 'tasks_stop'))
    assert stopped <= first                                   # before anything else
    assert lab.task_runs_between(stopped, started) == []      # none ran while the update did
    assert lab.threads_stopped() is False
    assert not [line for line in lab.admin('tasks', 'list') if 'stopped' in line]


def test_a_test_release_is_refused_on_a_scheduled_run(lab):
    result = lab.run(upgrade_release_channel='test')
    assert result.rc != 0
    assert 'only by a run started by hand' in result.stdout
    assert lab.version() == OLD
    journal = os.path.join(lab.base, 'state', 'journal.jsonl')
    assert not os.path.exists(journal) or os.path.getsize(journal) == 0              # nothing was begun
    assert lab.threads_stopped() is False

    source = os.path.join(lab.root, 'releases')
    scheduled = run_task('clinops.upgrade.release_pick', {'source': source, 'channel': 'test'})
    assert scheduled['failed'] and 'only by a run started by hand' in scheduled['msg']
    by_hand = run_task('clinops.upgrade.release_pick', {'source': source, 'channel': 'test', 'by_hand': True})
    assert not by_hand.get('failed') and (by_hand['version'], by_hand['channel']) == (TEST_ONLY, 'test')
    stable = run_task('clinops.upgrade.release_pick', {'source': source})
    assert (stable['version'], stable['file']) == (MAJOR, 'ksamu-%s.tar.gz' % MAJOR)


def test_minor_update_no_lock_users_keep_working_clients_update_at_next_login(lab):
    pid, sessions = lab.server_pid(), lab.admin('users')
    workers = [Worker(lab, user) for user in lab.users]
    for worker in workers:
        worker.start()
    result = lab.run(upgrade_release_version=MINOR)
    failures = [f for worker in workers for f in worker.stop()]
    assert result.rc == 0, result
    assert failures == []                                             # no piece of work refused or lost
    assert all(len(worker.answers) > 5 for worker in workers)
    assert lab.server_pid() == pid                                    # the server was never stopped
    assert lab.admin('users') == sessions                              # sessions kept, old clients
    assert all(lab.screen(user) == [] for user in lab.users)          # nobody was warned or asked anything
    assert lab.version() == MINOR and lab.admin('version') == ['OK KSAMU %s scripts 6.0.51' % MINOR]
    assert lab.query('SELECT SCRIPTS, APP FROM KS_VERSION') == [('6.0.51', MINOR)]
    journal = lab.journal()
    for step in ('warn', 'lock', 'stop', 'start', 'unlock', 'relogin'):
        assert journal[step]['result'] == 'skipped', step
    assert journal['update']['result'] == 'ok' and journal['update']['data']['update_progress']
    assert_tasks_stopped_first_and_started_again(lab, journal)
    report = lab.report()
    assert report['server1']['result'] == 'upgraded' and report['server1']['kind'] == 'minor'
    assert report['server1']['channel'] == 'stable'
    assert float(report['server1']['downtime_s']) == 0.0
    for client in lab.clients:
        assert report[client]['result'] == 'at_next_login'
        assert report[client]['message'].startswith('updates at next login')
        assert lab.version(client) == OLD                              # not pushed


def test_a_failing_updater_rolls_back_restores_the_database_and_tells_the_users(lab):
    build_lab.product_builder('ksamu').make_release(lab.root, MAJOR, broken=True)
    result = lab.run()
    assert result.rc != 0
    journal = lab.journal()
    assert journal['update']['result'] == 'failed'
    assert 'ERROR' in journal['update']['message'] and 'KS_DEPARTMENTS' in journal['update']['message']
    assert journal['finish']['result'] == 'rolled_back'
    assert 'the database was restored from' in journal['finish']['message']
    assert lab.version() == MINOR and lab.admin('version') == ['OK KSAMU %s scripts 6.0.51' % MINOR]
    assert 'SNILS' not in lab.columns('KS_PATIENTS')                   # script 001 had run; gbak's copy is back
    assert lab.columns('KS_REFERRALS') == []
    assert lab.admin('db', 'status') == ['unlocked']
    for user in lab.users:
        shown = [text for _t, text in lab.screen(user)]
        assert len(shown) == 5 and 'не удалось' in shown[-1]        # 4 warnings, then told it failed
    assert lab.threads_stopped() is False                              # started again after the failure
    assert not [line for line in lab.admin('tasks', 'list') if 'stopped' in line]
    assert lab.report()['server1']['result'] == 'rolled_back'


def test_major_update_warns_every_user_then_locks_backs_up_updates_unlocks_and_asks_to_log_in_again(lab):
    build_lab.product_builder('ksamu').make_release(lab.root, MAJOR)
    # by hand on the test channel, asking for the version: allowed
    result = lab.run(upgrade_release_channel='test', upgrade_by_hand=True, upgrade_release_version=MAJOR)
    assert result.rc == 0, result
    journal = lab.journal()
    locked, unlocked = stamp(journal['lock']['started']), stamp(journal['unlock']['ended'])
    warned = journal['warn']['data']['warned']
    assert [w['minutes'] for w in warned] == [8, 5, 2, 1]
    for user in lab.users:
        shown = lab.screen(user)
        warnings = [(t, text) for t, text in shown if 'Блокировка базы данных через' in text]
        assert [text.split('через ')[1].split(' ')[0] for _t, text in warnings] == ['8', '5', '2', '1']
        assert all(t < locked for t, _text in warnings)                # locked only after the last warning
        assert stamp(warnings[-1][0].isoformat()) <= locked
        assert 'Перезайдите' in shown[-1][1] and shown[-1][0] >= unlocked   # asked to log in again, after the unlock
    # the countdown took its (shortened) 8 minutes before the lock
    assert (locked - stamp(warned[0]['at'])).total_seconds() >= 8 * SECONDS_PER_MINUTE - 0.5
    backup = journal['backup']['data']['backup_path']
    assert backup.endswith('.fbk') and os.path.getsize(backup) > 0
    assert locked <= stamp(journal['backup']['started']) and stamp(journal['update']['ended']) <= unlocked
    assert lab.version() == MAJOR and lab.admin('version') == ['OK KSAMU %s scripts 6.0.52' % MAJOR]
    assert 'SNILS' in lab.columns('KS_PATIENTS')
    assert lab.query('SELECT COUNT(*) FROM KS_REFERRALS') == [(30,)]
    assert lab.admin('db', 'status') == ['unlocked']
    assert_tasks_stopped_first_and_started_again(lab, journal)
    report = lab.report()
    downtime = float(report['server1']['downtime_s'])
    assert downtime == pytest.approx((unlocked - locked).total_seconds(), abs=0.01)
    assert report['server1']['kind'] == 'major' and report['server1']['channel'] == 'test'
    for client in lab.clients:
        assert report[client]['result'] == 'at_next_login' and 'asked to log in again' in report[client]['message']
    print('major update downtime (lock to unlock): %.1f s' % downtime)
