"""The upgrade_notify role through real ansible-playbook runs, against a real SMTP server and a real HTTP server.

Both servers live in this test process on free ports of 127.0.0.1: aiosmtpd (tests/integration/mail_sink.py: AUTH
without TLS on loopback, every login and message kept) and http.server for the webhook.  The playbook the
tests write calls the role for ``start``, writes a real report with the upgrade_report role from sample report data,
and calls the role for ``finish``.
"""
import http.server
import json
import os
import socket
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position
from mail_sink import MailSink  # noqa: E402  pylint: disable=wrong-import-position

RUN_ID = '20260307T010000Z-4711'
PASSWORD = 'smtp-Pa55-word-never-shown'
TOKEN = 'hook-T0ken-never-shown'
SENDER = 'clinops-upgrade@it.klinik.example'
PROFILE_NOTIFY = 'admin@klinik.example, it@klinik.example'
FINISH_SUBJECT = ('[clinops.upgrade] site nord: 2 upgraded, 1 FAILED (rolled back), 1 held back, 1 already current'
                  ' - PMOD 4.3.0 -> 4.4.0')
START_SUBJECT = '[clinops.upgrade] site nord: upgrade STARTING on 2 servers, 3 clients - PMOD -> 4.4.0'


class HookHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # pylint: disable=invalid-name
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        self.server.calls.append({'path': self.path, 'headers': dict(self.headers), 'body': body})
        self.send_response(self.server.status)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


class HookServer:
    """A real HTTP server on 127.0.0.1 in a thread that records every POST and answers ``status``."""

    def __init__(self, status=200):
        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), HookHandler)
        self.server.calls = []
        self.server.status = status
        self.calls = self.server.calls
        self.url = 'http://127.0.0.1:%d/hooks/%s' % (self.server.server_address[1], TOKEN)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def bodies(self):
        return [json.loads(c['body']) for c in self.calls]


@pytest.fixture
def smtp():
    with MailSink() as server:
        yield server


@pytest.fixture
def hook():
    with HookServer() as server:
        yield server


@pytest.fixture
def refused_port():
    """A port of 127.0.0.1 that is bound but not listening: every connection is refused while the test runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    yield sock.getsockname()[1]
    sock.close()


def step(name, start, end, result='done'):
    return {'step': name, 'started': '2026-03-07T01:%s.000+00:00' % start, 'ended': '2026-03-07T01:%s.000+00:00' % end,
            'result': result}


def host(name, role, result, from_version='4.3.0', message='', downtime=None, server='', steps=()):
    installed = '4.4.0' if result in ('upgraded', 'current') else from_version
    return {'host': name, 'role': role, 'site': 'nord', 'server': server, 'from_version': from_version,
            'to_version': '4.4.0', 'installed_version': installed,
            'kind': 'none' if from_version == '4.4.0' else 'major', 'result': result, 'message': message,
            'downtime_s': downtime, 'attempt': 1, 'steps': list(steps), 'plan': {}, 'migrations_applied': {}}


def report_data(check_mode=False):
    """Report data shaped like the upgrade_report role's upgrade_report_data."""
    if check_mode:
        hosts = [host('client1', 'client', 'planned', server='server1'),
                 host('client3', 'client', 'current', from_version='4.4.0', server='server1'),
                 dict(host('server1', 'server', 'planned'), plan={'estimated_downtime_s': 42.0})]
    else:
        hosts = [
            host('client1', 'client', 'upgraded', message='upgraded from 4.3.0 to 4.4.0', server='server1'),
            host('client2', 'client', 'held_back', message='its server server2 was not upgraded', server='server2'),
            host('client3', 'client', 'current', from_version='4.4.0', server='server1'),
            host('server1', 'server', 'upgraded', message='upgraded from 4.3.0 to 4.4.0', downtime=312.4,
                 steps=[step('stop', '02:00', '02:10'), step('swap', '02:10', '04:00'), step('verify', '04:00', '07:12')]),
            host('server2', 'server', 'rolled_back', message='verify failed: Echo TS did not answer on port 1097',
                 downtime=95.0, steps=[step('stop', '08:00', '08:05'), step('verify', '08:05', '09:35', 'failed')]),
        ]
    results = [h['result'] for h in hosts]
    return {
        'run_id': RUN_ID, 'started': '2026-03-07T01:00:00.123456', 'ended': '2026-03-07T01:41:10.654321',
        'check_mode': check_mode, 'profile': 'pmod', 'hosts': hosts,
        'counts': {r: results.count(r) for r in set(results)}, 'nothing_to_do': False,
        'failed_hosts': [h['host'] for h in hosts if h['result'] in ('failed', 'rolled_back', 'refused')],
    }


def write_inventory(tmp_path):
    """localhost plus a site of two servers and three clients (never contacted: the role reads their variables)."""
    path = tmp_path / 'inventory.ini'
    path.write_text(
        'localhost ansible_connection=local ansible_python_interpreter=%s\n'
        '[servers]\nserver1\nserver2\n'
        '[clients]\nclient1 upgrade_server=server1\nclient2 upgrade_server=server2\nclient3 upgrade_server=server1\n'
        '[servers:vars]\nupgrade_role=server\n[clients:vars]\nupgrade_role=client\n'
        '[all:vars]\nupgrade_target_version=4.4.0\nupgrade_site=nord\nansible_connection=local\n' % sys.executable,
        encoding='utf-8')
    return str(path)


def playbook(tmp_path, notify, data, start=True, finish=True):
    """start -> write the report (the real upgrade_report role) -> finish -> a task standing for the rest of the run."""
    tasks = []
    if start:
        tasks += [
            {'name': 'Notify start', 'ansible.builtin.include_role': {'name': 'clinops.upgrade.upgrade_notify'},
             'vars': {'upgrade_notify_event': 'start'}},
            {'name': 'Keep the start result', 'ansible.builtin.set_fact': {'start_result': '{{ upgrade_notify_result }}'}},
        ]
    if data is not None:
        tasks.append({'name': 'Write the report', 'ansible.builtin.include_role': {
            'name': 'clinops.upgrade.upgrade_report', 'tasks_from': 'write.yml'}})
    if finish:
        tasks += [
            {'name': 'Notify finish', 'ansible.builtin.include_role': {'name': 'clinops.upgrade.upgrade_notify'},
             'vars': {'upgrade_notify_event': 'finish'}},
            {'name': 'Keep the finish result', 'ansible.builtin.set_fact': {'finish_result': '{{ upgrade_notify_result }}'}},
        ]
    tasks.append({'name': 'The run goes on', 'ansible.builtin.set_fact': {'went_on': True}})
    play_vars = dict(notify, upgrade_run_id=RUN_ID, upgrade_report_dir=str(tmp_path / 'reports'))
    if data is not None:
        play_vars.update(upgrade_report_data=data,
                         upgrade_report_base='%s/upgrade-%s' % (tmp_path / 'reports', RUN_ID))
    return [{'name': 'notify', 'hosts': 'localhost', 'gather_facts': False, 'vars': play_vars, 'tasks': tasks}]


def run(tmp_path, notify, data, check=False, args=(), **kwargs):
    result = run_playbook(playbook(tmp_path, notify, data, **kwargs), inventory=write_inventory(tmp_path),
                          check=check, args=args)
    assert result.rc == 0, result
    assert result.stats['localhost']['failures'] == 0, result
    assert result.result('The run goes on')['ansible_facts'] == {'went_on': True}
    return result


def fact(result, name):
    task = 'Keep the %s result' % name
    return result.result(task)['ansible_facts']['%s_result' % name]


def full_config(smtp_port, hook_url):
    return {
        'upgrade_notify_email_to': ['oncall@klinik.example', 'IT@klinik.example'],
        'upgrade_notify_email_cc': ['chief@klinik.example'],
        'upgrade_notify_email_from': SENDER,
        'upgrade_notify_smtp_host': '127.0.0.1',
        'upgrade_notify_smtp_port': smtp_port,
        'upgrade_notify_smtp_username': 'mailer',
        'upgrade_notify_smtp_password': PASSWORD,
        'upgrade_notify_webhook_url': hook_url,
        'upgrade_notify_webhook_headers': {'Authorization': 'Bearer ' + TOKEN},
        'upgrade_notify_webhook_extra': {'channel': '#it-ops'},
        'upgrade_notify_expected_downtime_s': 300,
        # the profile as the upgrade role loads it; its notify.email is the default of upgrade_notify_profile_recipients
        'upgrade_profile_data': {'name': 'pmod', 'product': 'PMOD', 'notify': {'email': PROFILE_NOTIFY}},
    }


def assert_secrets_hidden(result):
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert TOKEN not in output


def test_start_and_finish_by_mail_and_webhook(tmp_path, smtp, hook):
    # -vvv: the module arguments are printed too, and still neither the password nor the token may appear
    result = run(tmp_path, full_config(smtp.port, hook.url), report_data(), args=('-vvv',))
    assert_secrets_hidden(result)

    # the relay got both messages, each after AUTH PLAIN with the real password, to every recipient once
    assert len(smtp.messages) == 2, smtp.messages
    assert smtp.auths == [('mailer', PASSWORD)] * 2
    recipients = ['IT@klinik.example', 'admin@klinik.example', 'chief@klinik.example', 'oncall@klinik.example']
    for raw in smtp.messages:
        assert raw['from'] == SENDER
        assert raw['to'] == recipients
    start, finish = smtp.parsed()

    assert start['Subject'] == START_SUBJECT
    assert start['To'] == 'oncall@klinik.example, IT@klinik.example, admin@klinik.example'
    assert start['Cc'] == 'chief@klinik.example'
    assert start['X-Clinops-Run-Id'] == RUN_ID and start['X-Clinops-Event'] == 'start'
    assert start['X-Priority'] is None
    assert not list(start.iter_attachments())
    text = start.get_body(('plain',)).get_content()
    assert 'Run %s' % RUN_ID in text
    assert 'expected downtime: about 5 min per server' in text
    for line in ('server1: upgrade to 4.4.0', 'server2: upgrade to 4.4.0', 'client2 (of server2): upgrade to 4.4.0'):
        assert line in text, text

    assert finish['Subject'] == FINISH_SUBJECT
    assert finish['X-Clinops-Event'] == 'finish' and finish['X-Clinops-Status'] == 'failed'
    assert finish['X-Priority'] == '1' and finish['Importance'] == 'high'
    text = finish.get_body(('plain',)).get_content()
    attention = text.split('NEEDS ATTENTION (2)\n', 1)[1].split('\n\n', 1)[0].splitlines()
    assert attention == [
        '  server2 (server): FAILED (rolled back) 4.3.0 -> 4.4.0 (major), running 4.3.0, downtime 95 s'
        ' - verify failed: Echo TS did not answer on port 1097',
        '  client2 (client of server2): held back 4.3.0 -> 4.4.0 (major) - its server server2 was not upgraded',
    ]
    assert '  server1: upgraded 4.3.0 -> 4.4.0 (major), downtime 312 s (5 min)\n' in text
    assert '  client3 (of server1): already current at 4.4.0\n' in text
    assert 'Started 2026-03-07 01:00:00 UTC, ended 2026-03-07 01:41:10 UTC (took 41 min).' in text
    base = '%s/upgrade-%s' % (tmp_path / 'reports', RUN_ID)
    assert 'HTML: %s.html (attached)' % base in text and 'JSON: %s.json' % base in text

    attachments = list(finish.iter_attachments())
    assert [a.get_filename() for a in attachments] == ['upgrade-%s.html' % RUN_ID]
    with open(base + '.html', 'rb') as handle:
        html = handle.read()
    assert attachments[0].get_content() == html
    assert html.startswith(b'<!DOCTYPE html>') and b'verify failed: Echo TS did not answer' in html

    # the webhook: two POSTs of valid JSON with the token header, on the URL's path
    assert [c['path'] for c in hook.calls] == ['/hooks/' + TOKEN] * 2
    assert all(c['headers']['Authorization'] == 'Bearer ' + TOKEN for c in hook.calls)
    assert all(c['headers']['Content-Type'].startswith('application/json') for c in hook.calls)
    hook_start, hook_finish = hook.bodies()
    assert hook_start['event'] == 'start' and hook_start['status'] == 'started'
    assert hook_start['subject'] == START_SUBJECT and hook_start['run_id'] == RUN_ID
    assert hook_start['expected_downtime_s'] == 300.0 and hook_start['channel'] == '#it-ops'
    assert [h['host'] for h in hook_start['hosts']] == ['server1', 'server2', 'client1', 'client2', 'client3']
    assert hook_finish['event'] == 'finish' and hook_finish['status'] == 'failed'
    assert hook_finish['subject'] == FINISH_SUBJECT and hook_finish['text'].startswith(FINISH_SUBJECT + '\n')
    assert hook_finish['failed_hosts'] == ['server2'] and hook_finish['site'] == 'nord'
    assert hook_finish['product'] == 'PMOD' and hook_finish['channel'] == '#it-ops'
    assert hook_finish['report'] == {'json': base + '.json', 'md': base + '.md', 'html': base + '.html'}
    rows = {h['host']: h for h in hook_finish['hosts']}
    assert rows['server1']['downtime_s'] == 312.4 and rows['server2']['result'] == 'rolled_back'
    assert rows['server2']['message'] == 'verify failed: Echo TS did not answer on port 1097'
    assert 'steps' not in rows['server1']

    # what the role says it did
    assert fact(result, 'start')['sent'] == ['email', 'webhook'] and fact(result, 'start')['failed'] == []
    assert fact(result, 'finish')['sent'] == ['email', 'webhook']
    assert fact(result, 'finish')['attached'] == [base + '.html']
    # To: the configured addresses, then the profile's (it@ is IT@ already); Cc: the rest
    assert fact(result, 'finish')['recipients'] == ['oncall@klinik.example', 'IT@klinik.example', 'admin@klinik.example',
                                                    'chief@klinik.example']


def test_check_mode_sends_nothing(tmp_path, smtp, hook):
    result = run(tmp_path, full_config(smtp.port, hook.url), report_data(check_mode=True), check=True)
    assert_secrets_hidden(result)
    assert smtp.messages == [] and smtp.auths == []
    assert hook.calls == []
    for name in ('start', 'finish'):
        assert fact(result, name)['sent'] == [] and fact(result, name)['skipped'] == 'check mode: nothing sent'
    assert fact(result, 'start')['subject'] == '[clinops.upgrade] site nord: PLAN (check mode) ' + START_SUBJECT.split(': ', 1)[1]
    subject = '[clinops.upgrade] site nord: PLAN (check mode) 2 to upgrade, 1 already current - PMOD 4.3.0 -> 4.4.0'
    assert fact(result, 'finish')['subject'] == subject
    # what would be sent is printed
    assert 'check mode: this e-mail is NOT sent' in result.stdout
    assert 'check mode: this webhook is NOT called' in result.stdout
    assert 'subject: ' + subject in result.stdout
    assert '  server1: to upgrade 4.3.0 -> 4.4.0 (major), expected downtime 42 s' in result.stdout


def test_unreachable_relay_and_failing_webhook_warn_and_the_play_goes_on(tmp_path, refused_port):
    with HookServer(status=500) as hook:
        result = run(tmp_path, full_config(refused_port, hook.url), report_data())
        assert len(hook.calls) == 2  # it was called, and answered 500
    assert_secrets_hidden(result)
    for name in ('start', 'finish'):
        outcome = fact(result, name)
        assert outcome['sent'] == []
        assert [f['channel'] for f in outcome['failed']] == ['email', 'webhook'], outcome
        email_error, hook_error = [f['message'] for f in outcome['failed']]
        assert 'via 127.0.0.1:%d failed' % refused_port in email_error and 'Connection refused' in email_error
        assert hook_error.startswith('webhook http://127.0.0.1:%d/... failed: ' % hook.server.server_address[1])
        assert '500' in hook_error
    warning = result.result('clinops.upgrade.upgrade_notify : Warn that a notification was not sent')['msg']
    assert warning[0].startswith('WARNING: the finish notification did not reach everyone')
    assert warning[1:] == [f['message'] for f in fact(result, 'finish')['failed']]
    assert result.stats['localhost']['ignored'] == 4


def test_nothing_configured_sends_nothing(tmp_path, smtp):
    config = {'upgrade_notify_smtp_host': '127.0.0.1', 'upgrade_notify_smtp_port': smtp.port}
    result = run(tmp_path, config, None)
    assert smtp.messages == []
    for name in ('start', 'finish'):
        outcome = fact(result, name)
        assert outcome['sent'] == [] and outcome['failed'] == []
        assert outcome['skipped'].startswith('nothing configured')


def test_profile_recipients_only_finish_and_no_report(tmp_path, smtp):
    """A site that only wants the finish message, to the profile's address (a string, as in conaktiv.yml),
    and a run that stopped before its report: the message says so instead of failing."""
    config = {'upgrade_notify_smtp_host': '127.0.0.1', 'upgrade_notify_smtp_port': smtp.port,
              'upgrade_notify_smtp_secure': 'never', 'upgrade_notify_events': ['finish'],
              'upgrade_notify_profile_recipients': 'admin@klinik.example'}
    result = run(tmp_path, config, None)
    assert fact(result, 'start')['skipped'] == 'the start event is not in upgrade_notify_events'
    assert len(smtp.messages) == 1 and smtp.auths == []
    assert smtp.messages[0]['to'] == ['admin@klinik.example']
    message = smtp.parsed()[0]
    assert message['Subject'] == '[clinops.upgrade] site nord: the run ended WITHOUT A REPORT - PMOD -> 4.4.0'
    assert message['X-Priority'] == '1'
    assert 'ended without a report' in message.get_body(('plain',)).get_content()
    assert not list(message.iter_attachments())
    assert fact(result, 'finish')['sent'] == ['email']


def test_a_message_that_cannot_be_composed_warns_and_the_play_goes_on(tmp_path, smtp):
    """Report data that is not what the report role writes (hosts that are not dicts): the role warns, sends nothing."""
    config = {'upgrade_notify_email_to': 'oncall@klinik.example', 'upgrade_notify_smtp_host': '127.0.0.1',
              'upgrade_notify_smtp_port': smtp.port, 'upgrade_notify_report_data': {'hosts': [1, 2]}}
    result = run(tmp_path, config, None, start=False)
    assert smtp.messages == []
    outcome = fact(result, 'finish')
    assert outcome['sent'] == [] and [f['channel'] for f in outcome['failed']] == ['all']
    assert 'Error rendering template' in outcome['failed'][0]['message']
    warning = result.result('clinops.upgrade.upgrade_notify : Warn that the notification was not sent')['msg']
    assert warning.startswith('WARNING: the finish notification was not sent: ')
    assert result.stats['localhost']['rescued'] == 1
