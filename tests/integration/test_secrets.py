"""Secrets never in output: the PostgreSQL lab upgraded at -vvvv, with e-mail and webhook notifications.

One lab (real PostgreSQL 15, supervisord, the pynetdicom stand-in) and, in this process on 127.0.0.1, a real SMTP
server (aiosmtpd) that requires AUTH and a real HTTP server for the webhook. Three runs of playbooks/upgrade.yml, each
at -vvvv with the default stdout callback (what a person or a CI log sees), a log file (ANSIBLE_LOG_PATH) and
community.general.log_plays (every task result as a callback receives it, as AWX stores it in the job's events):

1. ``--check``: the plan and the notification preview;
2. a wrong database password: the backup fails, the server is rolled back, the notifications say so;
3. the right password: the upgrade goes through.

Afterwards every byte the runs printed and every file under the lab (journal, reports, manifests, backups, logs, the
PostgreSQL cluster), the callback logs and Ansible's temporary folders are searched for each secret, also base64- and
URL-encoded. Two kinds of file hold the database password by design and are the only ones allowed to: the lab's
inventory (the input) and the product's own Config.properties (the stand-in product reads its database password
there, as PMOD does, and the upgrade carries it into the new installation).
"""
import base64
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))
sys.path.insert(0, HERE)

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import ansible_env  # noqa: E402  pylint: disable=wrong-import-position
from mail_sink import MailSink  # noqa: E402  pylint: disable=wrong-import-position,import-error

psycopg = pytest.importorskip('psycopg')

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
MISSING = build_lab.missing_prerequisites(db='postgresql', dicom='pynetdicom')
pytestmark = [pytest.mark.skipif(bool(MISSING), reason='; '.join(MISSING)),
              # AUTH without TLS: the SMTP server listens on 127.0.0.1 only
              pytest.mark.filterwarnings('ignore:Requiring AUTH while not requiring TLS:UserWarning')]

# Files that hold the database password by design (paths relative to the lab root).
ALLOWED = re.compile(r'^(inventory/hosts\.yml|hosts/[^/]+/opt/PMOD[^/]*/(.+/)?properties/Config\.properties)$')


# ---------------------------------------------------------------------------------------------- what to look for

def base64_cores(secret):
    """The base64 characters that encode ``secret`` wherever it sits in a longer base64 text: for each of the three
    alignments, the groups made of the secret's bytes only (standard and URL-safe alphabets)."""
    found = set()
    for shift in range(3):
        first, last = -(-shift // 3), (shift + len(secret)) // 3       # whole groups inside the secret
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b'\0' * shift + secret)[4 * first:4 * last]
            if len(core) >= 8:
                found.add(core)
    return found


def needles(secret):
    """``secret`` as it could appear in output or a file: plain, URL-encoded, JSON-escaped, base64-encoded."""
    raw = secret.encode('utf-8')
    forms = {raw, urllib.parse.quote(secret, safe='').encode(), urllib.parse.quote_plus(secret).encode(),
             json.dumps(secret)[1:-1].encode()}
    return forms | base64_cores(raw)


class Finder:
    """Every form of every secret, searched in one pass over a blob."""

    def __init__(self, secrets_by_name):
        self.names = {}
        for name, secret in secrets_by_name.items():
            for needle in needles(secret):
                self.names.setdefault(needle, name)
        self.pattern = re.compile(b'|'.join(re.escape(n) for n in sorted(self.names, key=len, reverse=True)))

    def __call__(self, blob):
        """The secrets (name and form) found in ``blob``."""
        return sorted({'%s (%r)' % (self.names[m.group(0)], m.group(0)) for m in self.pattern.finditer(blob)})


# ---------------------------------------------------------------------------------------------- servers

class HookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.server.calls.append({'path': self.path, 'authorization': self.headers.get('Authorization'), 'body': body})
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


# ---------------------------------------------------------------------------------------------- the site and its runs

class Site:
    def __init__(self, root, work):
        self.root, self.work = root, work
        self.inventory = build_lab.build(root, clients=1, servers=1, rows=300, quiet=True, db='postgresql')
        with open(self.inventory, encoding='utf-8') as handle:
            handle.readline()
            self.server = json.load(handle)['all']['children']['servers']['hosts']['server1']
        self.secrets = {
            'the database password': self.server['pmod_db_password'],
            'the wrong database password': 'wrong-' + secrets.token_urlsafe(15),
            'the SMTP password': 'smtp/' + secrets.token_urlsafe(15) + '+@ &=',
            'the webhook token': 'hook' + secrets.token_urlsafe(18),
        }
        self.runs = []
        self.find = Finder(self.secrets)
        os.makedirs(os.path.join(work, 'logs'))

    def extra_vars(self, name, values):
        path = os.path.join(self.work, name)
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(values, handle)
        return path

    def run(self, name, *args):
        """One ansible-playbook run at -vvvv; its stdout and stderr are kept for the search."""
        logs = os.path.join(self.work, 'logs')
        env = ansible_env({
            'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg'),
            'ANSIBLE_STDOUT_CALLBACK': 'default',
            'ANSIBLE_CALLBACKS_ENABLED': 'community.general.log_plays',
            'ANSIBLE_LOG_FOLDER': os.path.join(logs, 'log_plays-' + name),
            'ANSIBLE_LOG_PATH': os.path.join(logs, 'ansible-%s.log' % name),
            'ANSIBLE_LOCAL_TEMP': os.path.join(self.work, 'ansible-local'),
            'ANSIBLE_REMOTE_TEMP': os.path.join(self.work, 'ansible-remote'),
        })
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', self.inventory, PLAYBOOK,
               '-vvvv'] + list(args)
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=1200, check=False, cwd=ROOT)
        self.runs.append((name, proc))
        return proc

    def reports(self):
        """The JSON reports, oldest first."""
        folder = os.path.join(self.root, 'reports')
        names = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))
        out = []
        for _mtime, name in names:
            with open(os.path.join(folder, name), encoding='utf-8') as handle:
                out.append(json.load(handle))
        return out

    def version(self, host):
        with open(os.path.join(self.root, 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
            return handle.read().strip()

    def journal(self, host='server1'):
        with open(os.path.join(self.root, 'hosts', host, 'state', 'journal.jsonl'), encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope='module')
def site():
    # under /tmp and searchable by others: the postgres user must enter the lab (pytest's tmp_path is 0700)
    root = tempfile.mkdtemp(prefix='clinops-lab-secrets-')
    work = tempfile.mkdtemp(prefix='clinops-secrets-work-')
    os.chmod(root, 0o755)
    sink = hook = None
    try:
        lab = Site(root, work)
        sink = MailSink(login=('mailer', lab.secrets['the SMTP password'])).start()
        hook = http.server.ThreadingHTTPServer(('127.0.0.1', 0), HookHandler)
        hook.calls = []
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        token = lab.secrets['the webhook token']
        notify = lab.extra_vars('notify.json', {
            'upgrade_notify_email_to': ['it@klinik.example'],
            'upgrade_notify_smtp_host': '127.0.0.1',
            'upgrade_notify_smtp_port': sink.port,
            'upgrade_notify_smtp_username': 'mailer',
            'upgrade_notify_smtp_password': lab.secrets['the SMTP password'],
            'upgrade_notify_smtp_secure': 'never',
            'upgrade_notify_webhook_url': 'http://127.0.0.1:%d/hooks/%s' % (hook.server_address[1], token),
            'upgrade_notify_webhook_headers': {'Authorization': 'Bearer ' + token},
        })
        wrong = lab.extra_vars('wrong.json', {'pmod_db_password': lab.secrets['the wrong database password']})
        lab.sink, lab.hook = sink, hook
        lab.check = lab.run('check', '-e', '@' + notify, '--check')
        lab.failed = lab.run('failed', '-e', '@' + notify, '-e', '@' + wrong)
        lab.upgraded = lab.run('upgraded', '-e', '@' + notify)
        yield lab
    finally:
        if hook is not None:
            hook.shutdown()
            hook.server_close()
        if sink is not None:
            sink.stop()
        try:
            build_lab.teardown(root, quiet=True)
        except SystemExit:
            pass
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def output(proc):
    return proc.stdout + b'\n' + proc.stderr


# ---------------------------------------------------------------------------------------------- the tests

def test_the_runs_did_what_they_should(site):
    assert site.check.returncode == 0, output(site.check)[-4000:]
    assert site.failed.returncode != 0, output(site.failed)[-4000:]
    assert site.upgraded.returncode == 0, output(site.upgraded)[-4000:]
    check, failed, upgraded = site.reports()
    assert check['check_mode'] and {h['host']: h['result'] for h in check['hosts']} == {
        'server1': 'planned', 'client1': 'planned'}
    # the wrong password is refused by the first step that logs in, the pre-stop migrations: nothing was stopped
    assert {h['host']: h['result'] for h in failed['hosts']} == {'server1': 'failed', 'client1': 'held_back'}
    assert {h['host']: h['result'] for h in upgraded['hosts']} == {'server1': 'upgraded', 'client1': 'upgraded'}
    assert site.version('server1') == site.version('client1') == '4.4.0'


def test_no_secret_in_any_output_or_file(site):
    """Every byte printed by the three runs, every file under the lab and the runs' logs and temporary folders."""
    assert len(site.runs) == 3
    leaks = []
    for name, proc in site.runs:
        leaks += ['%s run output: %s' % (name, found) for found in site.find(output(proc))]
    searched = allowed = 0
    for base, label in ((site.root, 'lab'), (site.work, 'logs and temporary folders')):
        for folder, _dirs, files in os.walk(base):
            for file_name in files:
                path = os.path.join(folder, file_name)
                relative = os.path.relpath(path, base)
                if label == 'logs and temporary folders' and relative in ('notify.json', 'wrong.json'):
                    continue    # the runs' input
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, 'rb') as handle:
                    found = site.find(handle.read())
                searched += 1
                if label == 'lab' and ALLOWED.match(relative):
                    allowed += 1
                    found = [f for f in found if not f.startswith('the database password ')]
                leaks += ['%s %s: %s' % (label, relative, f) for f in found]
    assert not leaks, '\n'.join(leaks)
    # the search covered what the runs wrote: the journal, the reports, the backups and their manifests, the logs
    assert searched > 100 and allowed >= 3
    written = [os.path.relpath(os.path.join(f, n), site.root) for f, _d, ns in os.walk(site.root) for n in ns]
    for wanted in (r'hosts/server1/state/journal\.jsonl', r'reports/upgrade-.*\.html', r'reports/upgrade-.*\.md',
                   r'hosts/server1/backups/postgresql_.*\.dump\.manifest\.json'):
        assert any(re.fullmatch(wanted, w) for w in written), wanted
    logs = [os.path.relpath(os.path.join(f, n), site.work) for f, _d, ns in os.walk(site.work) for n in ns]
    assert {'logs/ansible-check.log', 'logs/ansible-failed.log', 'logs/ansible-upgraded.log'} <= set(logs)
    assert [n for n in logs if n.startswith('logs/log_plays-upgraded/')], logs


def test_the_secrets_were_really_used(site):
    sink, token = site.sink, site.secrets['the webhook token']
    # check mode sends nothing; each real run sends start and finish, each e-mail after an AUTH with the password
    assert len(sink.messages) == 4 and all(m['authenticated'] for m in sink.messages), sink.messages
    assert sink.auths == [('mailer', site.secrets['the SMTP password'])] * 4
    assert [c['path'] for c in site.hook.calls] == ['/hooks/' + token] * 4
    assert [c['authorization'] for c in site.hook.calls] == ['Bearer ' + token] * 4
    # what was sent carries none of the secrets
    for blob in [m['data'] for m in sink.messages] + [c['body'] for c in site.hook.calls]:
        assert not site.find(blob)
    # the database: the backup (pg_dump logs in with the password) and the migrations of 4.4.0 are in it
    backups = os.listdir(os.path.join(site.root, 'hosts', 'server1', 'backups'))
    assert [n for n in backups if n.startswith('postgresql_pmod_server1_pre-4.4.0') and n.endswith('.dump')], backups
    sv = site.server
    with psycopg.connect(host=sv['pmod_db_host'], port=sv['pmod_db_port'], user=sv['pmod_db_user'],
                         password=sv['pmod_db_password'], dbname=sv['pmod_db_name'], connect_timeout=10) as conn:
        versions = [row[0] for row in conn.execute('SELECT version FROM clinops_schema_history ORDER BY version')]
    assert '4.4.0' in versions, versions


def test_a_wrong_password_fails_clearly(site):
    """The run with the wrong password says what failed (the login), in its output, the report and the journal."""
    text = output(site.failed).decode('utf-8', 'replace')
    assert 'password authentication failed for user "pmod"' in text, text[-4000:]
    server = {h['host']: h for h in site.reports()[1]['hosts']}['server1']
    assert server['message'].startswith('step migrate_pre failed: cannot connect to postgresql database pmod_server1'), server
    assert 'password authentication failed for user "pmod"' in server['message'], server
    assert 'nothing was stopped' in server['message'], server
    failed = [e for e in site.journal() if e['result'] == 'failed']
    # the step, then the attempt closed as failed
    assert [e['step'] for e in failed] == ['migrate_pre', 'finish'], failed
    assert all('password authentication failed for user "pmod"' in e['message'] for e in failed), failed
