"""ConAktiv end to end (vendor procedure 002): playbooks/upgrade.yml on the lab that ``build_lab.py --product conaktiv``
builds, against real servers started for this module: the vendor's FTP server (pyftpdlib, started by the lab), the
ConAktiv stand-in under supervisord with three user sessions (each under its own supervisord, writing what it is shown
to its own log), and an SMTP server (aiosmtpd) that receives the administrator's e-mail.

One lab for the module, put back as built before each case (``lab/conaktiv/build.py`` ``reset_site``). Everything is
read back from the real state: the server folder, the data file (SQLite), the backups and their manifests, the client
logs, the server's own answers, the e-mails.
"""
import datetime
import email
import email.policy
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import zoneinfo

import pytest

from labtools import ENV, PLAYBOOK  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from conaktiv import build as ca_build  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position
from mail_sink import MailSink  # noqa: E402  pylint: disable=wrong-import-position

WAIT = 6                      # the users' wait time (conaktiv_wait_seconds) in these runs
ADMIN = 'it-admin@klinik.example'   # marked in the lab's user module as administrator for server messages
SITE_RECIPIENT = 'it@klinik.example'
CARRIED = ('Server Database/Preferences', 'Server Database/cert.pem', 'Server Database/key.pem',
           'Server Database/Resources/Hunspell')


class Site:
    def __init__(self, root, inventory, sink, smtp_port):
        self.root, self.inventory, self.sink = root, inventory, sink
        self.base = os.path.join(root, 'hosts', 'server1')
        self.inst = os.path.join(self.base, 'srv', ca_build.TOP)
        self.extra = os.path.join(root, 'notify.json')
        with open(self.extra, 'w', encoding='utf-8') as handle:
            json.dump({'upgrade_notify_email_to': [SITE_RECIPIENT], 'upgrade_notify_smtp_host': '127.0.0.1',
                       'upgrade_notify_smtp_port': smtp_port, 'upgrade_notify_smtp_secure': 'never',
                       'upgrade_notify_events': ['finish'], 'conaktiv_wait_seconds': WAIT}, handle)

    def run(self, *extra_vars):
        args = ['-e', '@' + self.extra]
        for values in extra_vars:
            args += ['-e', json.dumps(values)]
        return run_playbook(PLAYBOOK, inventory=self.inventory, env=ENV, timeout=900, args=args)

    def admin(self, *args, root=None):
        root = root or self.inst
        proc = subprocess.run([sys.executable, os.path.join(root, 'bin', 'ca_admin.py'), '--root', root] + list(args),
                              capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def version(self):
        with open(os.path.join(self.inst, 'version.txt'), encoding='utf-8') as handle:
            return handle.read().strip()

    def server_pid(self):
        return ca_build.supervisorctl(os.path.join(self.base, 'supervisor', 'supervisord.conf'), 'pid', ca_build.SERVICE).stdout.strip()

    def client_log(self, index):
        path = os.path.join(self.root, 'hosts', 'client%d' % index, 'messages.log')
        with open(path, encoding='utf-8') as handle:
            return handle.read()

    def data(self, root=None):
        """The data file's rows (users and contacts, the columns of before) and its structure version."""
        conn = sqlite3.connect(os.path.join(root or self.inst, 'Server Database', 'ConAktiv.4DD'))
        try:
            return dict(structure=conn.execute('SELECT version FROM structure').fetchone()[0],
                        columns=[r[1] for r in conn.execute('PRAGMA table_info(contacts)')],
                        users=conn.execute('SELECT login, name, email, admin_server_messages FROM users ORDER BY id').fetchall(),
                        contacts=conn.execute('SELECT id, company, city, owner FROM contacts ORDER BY id').fetchall())
        finally:
            conn.close()

    def carried(self, root=None):
        """sha256 and mode of every file of the carried items."""
        root = root or self.inst
        found = {}
        for item in CARRIED:
            path = os.path.join(root, item)
            paths = [path] if os.path.isfile(path) else sorted(
                os.path.join(b, f) for b, dummy, files in os.walk(path) for f in files)
            for name in paths:
                with open(name, 'rb') as handle:
                    found[os.path.relpath(name, root)] = (hashlib.sha256(handle.read()).hexdigest(),
                                                          stat.S_IMODE(os.stat(name).st_mode))
        return found

    def journal(self):
        path = os.path.join(self.base, 'state', 'journal.jsonl')
        with open(path, encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def backups(self):
        found = {}
        for path in glob.glob(os.path.join(self.base, 'backups', '*.manifest.json')):
            with open(path, encoding='utf-8') as handle:
                manifest = json.load(handle)
            found[manifest['label']] = manifest
        return found

    def report(self):
        paths = sorted(glob.glob(os.path.join(self.root, 'reports', '*.json')), key=os.path.getmtime)
        with open(paths[-1], encoding='utf-8') as handle:
            return {h['host']: h for h in json.load(handle)['hosts']}

    def mails(self):
        with self.sink.lock:
            return [dict(m, msg=email.message_from_bytes(m['data'], policy=email.policy.default)) for m in self.sink.messages]


@pytest.fixture(scope='module')
def lab():
    root = tempfile.mkdtemp(prefix='clinops-lab-conaktiv-')
    sink = MailSink().start()
    try:
        inventory = build_lab.build(root, clients=3, servers=1, rows=300, quiet=True, product='conaktiv')
        yield Site(root, inventory, sink, sink.port)
    finally:
        sink.stop()
        build_lab.teardown(root, quiet=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def site(lab):
    ca_build.make_release(lab.root, ca_build.NEW_VERSION)
    ca_build.reset_site(lab.root)
    lab.sink.clear()
    return lab


def report_html(site):
    return sorted(glob.glob(os.path.join(site.root, 'reports', '*.html')), key=os.path.getmtime)[-1]


def cutover_message(result):
    tasks = [t for t in result.tasks if t['task']['name'].endswith('in one task')]
    return tasks[-1]['hosts']['server1'].get('msg', '') if tasks else ''


def tree(folder):
    """Every path under ``folder`` with its mode and, for files, the sha256 of its bytes."""
    found = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(base, name)
            info = os.lstat(path)
            digest = None
            if stat.S_ISREG(info.st_mode):
                with open(path, 'rb') as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            found[os.path.relpath(path, folder)] = (stat.S_IMODE(info.st_mode), digest)
    return found


def test_outside_the_window_the_run_ends_green_says_when_and_changes_nothing(site):
    """First in the module: the untouched lab. The site's start date is the day after tomorrow (in its time zone, by
    the real clock); the profile's "Uhrzeit von/bis" (22:00-05:00) applies, so now is outside the window."""
    zone = 'Europe/Berlin'
    local_now = datetime.datetime.now(zoneinfo.ZoneInfo(zone))
    start_date = local_now.date() + datetime.timedelta(days=2)
    opens = datetime.datetime.combine(start_date, datetime.time(22, 0), tzinfo=zoneinfo.ZoneInfo(zone))
    ftp_log = ca_build.ftp_state(site.root)['log']
    server_conf = os.path.join(site.base, 'supervisor', 'supervisord.conf')

    def state():
        with open(os.path.join(site.inst, 'Server Database', 'ConAktiv.4DD'), 'rb') as handle:
            data_bytes = handle.read()
        with open(ftp_log, 'rb') as handle:
            ftp = handle.read()
        return dict(srv=tree(os.path.dirname(site.inst)), data=data_bytes, pid=site.server_pid(),
                    supervisor=[line.split(', uptime')[0].split() for line in
                                ca_build.supervisorctl(server_conf, 'status').stdout.splitlines()],
                    who=sorted(site.admin('who').split()), state=tree(os.path.join(site.base, 'state')),
                    backups=tree(os.path.join(site.base, 'backups')), ftp=ftp,
                    clients=[os.path.exists(os.path.join(site.root, 'hosts', 'client%d' % i, 'messages.log'))
                             and site.client_log(i) for i in (1, 2, 3)])

    before = state()
    assert before['who'] == ['keller', 'mueller', 'weber']
    assert before['supervisor'] == [[ca_build.SERVICE, 'RUNNING', 'pid', before['pid']]], before['supervisor']
    result = site.run({'upgrade_window': {'start_date': start_date.isoformat()}, 'upgrade_timezone': zone})
    assert result.rc == 0, result
    messages = {h['msg'] for t in result.tasks if t['task']['name'].endswith('Say whether the upgrade may run now, and when next')
                for h in t['hosts'].values()}
    assert len(messages) == 1, messages
    message = messages.pop()
    assert message.startswith('upgrade window: nothing done, not now'), message
    assert 'only on the start date %s' % start_date.isoformat() in message, message
    assert 'next allowed %s' % opens.strftime('%Y-%m-%d %H:%M %Z') in message, message
    for host, stats in result.stats.items():
        assert stats['changed'] == 0 and stats['failures'] == 0 and stats['unreachable'] == 0, (host, stats)
    # nothing changed: the server folder (and nothing beside it), the data file's bytes, the server process and its
    # sessions, no journal, no backup, nobody told, and nothing fetched from the vendor's FTP server
    assert state() == before
    assert not os.path.exists(os.path.join(site.base, 'state', 'journal.jsonl'))
    assert b'RETR ' not in before['ftp']
    assert site.mails() == []


def test_full_upgrade_from_the_ftp_server_then_rerun_is_a_no_op(site):
    carried, data = site.carried(), site.data()
    assert sorted(site.admin('who').split()) == ['keller', 'mueller', 'weber']

    result = site.run()
    assert result.rc == 0, result

    # the new version runs, from the release downloaded into Temp_Updateordner (gone again, with _old0001)
    assert site.version() == ca_build.NEW_VERSION
    assert site.admin('echo') == 'OK ConAktiv %s data %s' % (ca_build.NEW_VERSION, ca_build.NEW_VERSION)
    srv = os.path.dirname(site.inst)
    assert sorted(os.listdir(srv)) == [ca_build.TOP]
    entries = {e['step']: e for e in site.journal() if e['result'] in ('ok', 'skipped')}
    assert entries['stage']['data']['downloaded']['url'].startswith('ftp://127.0.0.1:')
    assert entries['stage']['data']['staged'] == os.path.join(srv, 'Temp_Updateordner', ca_build.TOP)
    assert entries['cleanup']['data']['removed_old'] == [site.inst + '_old0001']
    # the vendor's order
    order = [e['step'] for e in site.journal() if e['result'] == 'ok']
    assert order == ['begin', 'stage', 'backup_online', 'users', 'stop', 'swap', 'prefs', 'start', 'verify', 'migrate_post',
                     'backup_after', 'cleanup']

    # the users: all three told, two logged off, the third held until the wait time passed
    users = entries['users']['data']
    assert sorted(users['users_logged_on']) == ['keller', 'mueller', 'weber']
    assert users['users_still_logged_on'] == ['weber'] and users['users_timed_out']
    assert users['users_waited_s'] >= WAIT
    for index in (1, 2):
        log = site.client_log(index)
        assert 'Meldung: Der ConAktiv Server wird für das Update auf %s beendet' % ca_build.NEW_VERSION in log
        assert 'logged off after the message' in log
    log = site.client_log(3)
    assert 'Meldung: Der ConAktiv Server wird für das Update auf %s beendet' % ca_build.NEW_VERSION in log
    assert 'logged off' not in log and 'server stopped the session' in log
    with open(os.path.join(site.base, 'logs', 'conaktiv-server.log'), encoding='utf-8') as handle:
        assert 'Servermeldung: Der ConAktiv Server wird' in handle.read()

    # carried: Preferences, the certificate pair (the key still 0600), Hunspell; the data file's records
    assert site.carried() == carried
    assert carried['Server Database/key.pem'][1] == 0o600
    after = site.data()
    assert after['users'] == data['users'] and after['contacts'] == data['contacts']
    # the structural update ran, after the start
    assert data['structure'] == ca_build.OLD_VERSION and after['structure'] == ca_build.NEW_VERSION
    assert 'newsletter' in after['columns'] and 'newsletter' not in data['columns']

    # two verified backups: before (while the server still ran) and of the new version
    backups = site.backups()
    pre, post = backups['pre-%s' % ca_build.NEW_VERSION], backups['post-%s' % ca_build.NEW_VERSION]
    assert pre['verification']['ok'] and post['verification']['ok']
    assert pre['verification']['level'] == post['verification']['level'] == 'restore'
    assert pre['created_ns'] < post['created_ns']
    # each is ConAktiv's own backup (engine command: ca_admin.py backup), stored with the sha256 of what it wrote, checked
    # by the vendor's verify, and its data file holds the version of its time
    vendor_dir = os.path.join(site.base, 'backups', 'ConAktiv')
    for manifest, structure in ((pre, ca_build.OLD_VERSION), (post, ca_build.NEW_VERSION)):
        assert manifest['engine'] == 'command'
        [(written, info)] = manifest['written'].items()
        assert re.fullmatch(r'ConAktiv-\d{8}T\d{6}\.tar\.gz', written), written
        with open(os.path.join(vendor_dir, written), 'rb') as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == info['sha256']
        assert any('the verify command' in check and 'accepted it' in check for check in manifest['verification']['checks'])
        with tarfile.open(os.path.join(vendor_dir, written)) as tar, tempfile.TemporaryDirectory() as scratch:
            tar.extractall(scratch, filter='data')
            assert site.data(scratch)['structure'] == structure

    # the administrator read from the user data, and the site's recipient, get the report
    mails = site.mails()
    assert len(mails) == 1, mails
    assert set(mails[0]['to']) == {ADMIN, SITE_RECIPIENT}
    msg = mails[0]['msg']
    body = msg.get_body(preferencelist=('plain',)).get_content()
    assert '9.1.0' in body and '9.2.0' in body and 'downtime' in body
    attached = list(msg.iter_attachments())
    assert [a.get_filename() for a in attached] == [os.path.basename(report_html(site))]
    with open(report_html(site), 'rb') as handle:
        html = handle.read()
    assert attached[0].get_payload(decode=True) == html and b'server1' in html

    report = site.report()['server1']
    assert report['result'] == 'upgraded'
    print('\nConAktiv lab upgrade: downtime %.3f s, waited %.3f s for the users to log off'
          % (float(report['downtime_s']), users['users_waited_s']))

    # a rerun has nothing to do
    before = (site.server_pid(), site.carried(), site.data(), sorted(os.listdir(os.path.join(site.base, 'backups'))))
    again = site.run()
    assert again.rc == 0, again
    assert all(again.stats[h]['changed'] == 0 for h in again.stats), again.stats
    assert (site.server_pid(), site.carried(), site.data(), sorted(os.listdir(os.path.join(site.base, 'backups')))) == before


def test_a_download_with_the_wrong_checksum_stops_the_run_before_anything_stops(site):
    # the site marks another user as administrator for server messages: the e-mail follows the product's user data
    conn = sqlite3.connect(os.path.join(site.inst, 'Server Database', 'ConAktiv.4DD'))
    with conn:
        conn.execute("UPDATE users SET admin_server_messages = (login = 'keller')")
    conn.close()
    pid, data, carried = site.server_pid(), site.data(), site.carried()
    wrong = 'ab' * 32
    result = site.run({'upgrade_artifact_sha256': wrong})
    assert result.rc != 0
    message = cutover_message(result)
    assert 'step stage failed' in message and wrong in message
    assert '/ConAktiv_Server_%s.tar.gz' % ca_build.NEW_VERSION in message and 'ftp://127.0.0.1:' in message
    # nothing stopped, nobody told, nothing moved or backed up
    assert site.server_pid() == pid
    assert sorted(site.admin('who').split()) == ['keller', 'mueller', 'weber']
    for index in (1, 2, 3):
        assert 'Meldung' not in site.client_log(index)
    assert site.version() == ca_build.OLD_VERSION
    assert sorted(os.listdir(os.path.dirname(site.inst))) == [ca_build.TOP]
    assert site.backups() == {}
    assert site.data() == data and site.carried() == carried
    assert [e['step'] for e in site.journal() if e['result'] == 'failed'] == ['stage', 'finish']
    # the failed run still tells the administrator, the one the user data names now
    mails = site.mails()
    assert len(mails) == 1 and set(mails[0]['to']) == {'keller@klinik.example', SITE_RECIPIENT}
    assert 'FAILED' in mails[0]['msg']['subject'], mails[0]['msg']['subject']


def test_a_failing_structural_update_rolls_back_to_the_old_folder_with_the_data_restored(site):
    ca_build.make_release(site.root, ca_build.NEW_VERSION, broken=True)
    data, carried = site.data(), site.carried()
    db_inode = os.stat(os.path.join(site.inst, 'Server Database')).st_ino
    result = site.run()
    assert result.rc != 0
    assert 'step migrate_post failed' in cutover_message(result)
    assert 'Strukturupdate abgebrochen' in cutover_message(result)
    # the old folder is back under the server's name, running and answering with the old version and data
    assert site.version() == ca_build.OLD_VERSION
    assert site.admin('echo') == 'OK ConAktiv %s data %s' % (ca_build.OLD_VERSION, ca_build.OLD_VERSION)
    srv = os.path.dirname(site.inst)
    assert sorted(os.listdir(srv)) == sorted([ca_build.TOP, '%s_failed_%s_1' % (ca_build.TOP, ca_build.NEW_VERSION)])
    assert site.data() == data                      # no half-done structure change: newsletter is not there
    # the data came back through ConAktiv's own restore (ca_admin.py restore) from the pre-upgrade backup: a new
    # "Server Database" was put in place in the old folder, and the journal names the backup
    pre = site.backups()['pre-%s' % ca_build.NEW_VERSION]
    assert pre['engine'] == 'command' and pre['verification']['ok']
    finish = [e for e in site.journal() if e['step'] == 'finish'][-1]
    assert 'the database was restored from %s' % os.path.join(site.base, 'backups', pre['file']) in json.dumps(finish), finish
    assert os.stat(os.path.join(site.inst, 'Server Database')).st_ino != db_inode
    # ConAktiv's restore refuses while the server answers (the rollback stopped it first): nothing is touched
    [vendor] = glob.glob(os.path.join(site.base, 'backups', 'ConAktiv', 'ConAktiv-*.tar.gz'))
    restored_inode = os.stat(os.path.join(site.inst, 'Server Database')).st_ino
    refused = subprocess.run([sys.executable, os.path.join(site.inst, 'bin', 'ca_admin.py'), '--root', site.inst, 'restore',
                              '--from', vendor], capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and 'the server is running' in refused.stderr, refused
    assert os.stat(os.path.join(site.inst, 'Server Database')).st_ino == restored_inode and site.data() == data
    assert site.carried() == carried
    # the failed new folder shows what the broken update did to its copy of the data
    assert 'newsletter' in site.data(os.path.join(srv, '%s_failed_%s_1' % (ca_build.TOP, ca_build.NEW_VERSION)))['columns']
    assert site.report()['server1']['result'] == 'rolled_back'
    mails = site.mails()
    assert len(mails) == 1 and ADMIN in mails[0]['to']
