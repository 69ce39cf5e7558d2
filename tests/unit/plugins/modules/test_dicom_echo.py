# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dicom_echo: the module entry point (exit_json/fail_json patched to raise) and echoes against
pynetdicom SCPs started inside the test on free loopback ports."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom
from ansible_collections.clinops.upgrade.plugins.modules import dicom_echo

LOCALHOST = '127.0.0.1'


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture
def module_calls(monkeypatch):
    """Patch exit_json/fail_json to raise with the result; refuse any echo unless a test allows it."""
    def exit_json(self, **kwargs):  # pylint: disable=unused-argument
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):  # pylint: disable=unused-argument
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)


def run_module(args):
    with patch_module_args(args):
        try:
            dicom_echo.main()
        except (ExitJson, FailJson) as exc:
            return exc.__class__, exc.args[0]
    raise AssertionError('the module neither exited nor failed')


def free_port():
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to echo fails the test: input errors must be caught before traffic."""
    def forbidden(*args, **kwargs):
        raise AssertionError('network traffic before the input was checked')
    monkeypatch.setattr(dicom_echo, 'run_peers', forbidden)
    monkeypatch.setattr(dicom.PeerEcho, 'once', forbidden)


# --- bad input: a clear failure before any traffic --------------------------------------------------------

@pytest.mark.parametrize('args, words', [
    ({'host': LOCALHOST, 'port': 0}, 'port 0 is out of range (1-65535)'),
    ({'host': LOCALHOST, 'port': 70000}, 'port 70000 is out of range (1-65535)'),
    ({'host': LOCALHOST, 'called_aet': ''}, 'called_aet must not be empty'),
    ({'host': LOCALHOST, 'calling_aet': 'A' * 17}, 'calling_aet'),
    ({'host': LOCALHOST, 'called_aet': 'ABCDEFGHIJKLMNOPQRS'}, 'an AE title has at most 16'),
    ({'host': LOCALHOST, 'tls': {'ca_file': '/nonexistent/ca.pem'}}, 'tls.ca_file /nonexistent/ca.pem does not exist'),
    ({'host': LOCALHOST, 'tls': {'cert_file': '/nonexistent/c.pem', 'key_file': '/nonexistent/k.pem'}},
     'tls.cert_file /nonexistent/c.pem does not exist'),
    ({'host': LOCALHOST, 'peers': [{'host': LOCALHOST}]}, 'parameters are mutually exclusive: host|peers'),
    ({}, 'one of the following is required: host, peers'),
    ({'peers': []}, 'peers must list at least one peer'),
    ({'peers': [{'host': LOCALHOST, 'port': 104}, {'host': LOCALHOST, 'port': 99999}]}, 'port 99999 is out of range'),
    ({'peers': [{'host': LOCALHOST, 'called_aet': ' '}]}, 'called_aet must not be empty'),
    ({'peers': [{'port': 104}]}, 'missing required arguments: host'),
    ({'host': ''}, 'host must not be empty'),
    ({'host': LOCALHOST, 'repeat': 0}, 'repeat must be 1 or more'),
    ({'host': LOCALHOST, 'wait': -5}, 'wait must be 0 or more seconds'),
    ({'host': LOCALHOST, 'delay': 0}, 'delay must be above 0 seconds'),
    ({'host': LOCALHOST, 'connect_timeout': 0}, 'connect_timeout must be a number of seconds above 0'),
    ({'host': LOCALHOST, 'max_pdu': 10}, 'max_pdu must be 0 (no limit) or 4096-4294967295'),
    ({'host': LOCALHOST, 'tls': {'min_version': 'TLSv1.0'}}, 'min_version'),
])
def test_bad_input_fails_before_any_traffic(module_calls, no_network, args, words):  # pylint: disable=unused-argument
    kind, result = run_module(args)
    assert kind is FailJson
    assert words in result['msg']
    assert 'Traceback' not in result['msg']
    assert not result.get('changed')


def test_unusable_certificate_file_fails_before_traffic(module_calls, no_network, tmp_path):  # pylint: disable=unused-argument
    bad = tmp_path / 'client.pem'
    bad.write_text('-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n')
    kind, result = run_module({'host': LOCALHOST, 'tls': {'cert_file': str(bad), 'verify': False}})
    assert kind is FailJson
    assert 'the TLS files cannot be used' in result['msg']


def test_missing_pynetdicom_is_reported(module_calls, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(dicom_echo, 'HAS_PYNETDICOM', False)
    kind, result = run_module({'host': LOCALHOST})
    assert kind is FailJson
    assert 'pynetdicom' in result['msg']


def fake_runs(outcomes):
    def run_peers(peers, wait, delay, repeat):  # pylint: disable=unused-argument
        results = []
        for one, outcome in zip(peers, outcomes):
            results.append({'host': one['host'], 'port': one['port'], 'called_aet': one['called_aet'],
                            'calling_aet': one['calling_aet'], 'tls': False, 'outcome': outcome,
                            'status': 0 if outcome == 'success' else None,
                            'reason': None if outcome == 'success' else 'why',
                            'latency_ms': dicom.latency_stats([1.0] if outcome == 'success' else []), 'attempts': 1})
        return results
    return run_peers


def test_all_success_is_never_changed(module_calls, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(dicom_echo, 'run_peers', fake_runs(['success', 'success']))
    kind, result = run_module({'peers': [{'host': 'a'}, {'host': 'b', 'port': 11112}], 'called_aet': 'PACS'})
    assert kind is ExitJson
    assert result['changed'] is False
    assert result['failed_peers'] == []
    assert result['msg'] == '2 DICOM peers answered the C-ECHO with success'
    assert [r['port'] for r in result['results']] == [104, 11112]
    assert [r['called_aet'] for r in result['results']] == ['PACS', 'PACS']


def test_a_failed_peer_fails_the_task(module_calls, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(dicom_echo, 'run_peers', fake_runs(['success', 'rejected']))
    kind, result = run_module({'peers': [{'host': 'a'}, {'host': 'b', 'called_aet': 'B'}]})
    assert kind is FailJson
    assert result['changed'] is False
    assert result['failed_peers'] == ['B@b:104']
    assert result['msg'] == '1 of 2 DICOM peers failed the C-ECHO: B@b:104 rejected (why)'
    assert len(result['results']) == 2


def test_fail_on_error_false_only_reports(module_calls, monkeypatch):  # pylint: disable=unused-argument
    monkeypatch.setattr(dicom_echo, 'run_peers', fake_runs(['timeout']))
    kind, result = run_module({'host': 'a', 'fail_on_error': False})
    assert kind is ExitJson
    assert result['failed_peers'] == ['ANY-SCP@a:104']
    assert 'timeout (why)' in result['msg']


# --- real echoes against in-process pynetdicom SCPs --------------------------------------------------------

@pytest.fixture
def scp():
    """Start pynetdicom SCPs in this process: scp(mode) -> port. Modes: ok, bad-status, abort, slow, no-context."""
    servers = []
    release = threading.Event()

    def start(mode='ok', aet='UNITSCP', maximum_associations=10, acse_timeout=30):
        def on_echo(event):
            if mode == 'bad-status':
                return 0xC001
            if mode == 'abort':
                event.assoc.abort()
            if mode == 'slow':
                release.wait(10)
            return 0x0000

        ae = AE(ae_title=aet)
        ae.require_called_aet = True
        ae.maximum_associations = maximum_associations
        ae.acse_timeout = acse_timeout
        ae.add_supported_context(CTImageStorage if mode == 'no-context' else Verification)
        port = free_port()
        servers.append(ae.start_server((LOCALHOST, port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]))
        return port

    yield start
    release.set()
    for server in servers:
        server.shutdown()


def echo_once(port, **overrides):
    dicom.quiet_pynetdicom()
    settings = dict(dicom.DEFAULTS, host=LOCALHOST, port=port, called_aet='UNITSCP', tls=None,
                    connect_timeout=3, acse_timeout=3, dimse_timeout=3)
    settings.update(overrides)
    return dicom.run_peer(settings)


def test_echo_success_in_process(scp):
    port = scp('ok')
    result = dicom.run_peer(dict(dicom.DEFAULTS, host=LOCALHOST, port=port, called_aet='UNITSCP', tls=None), repeat=3)
    assert result['outcome'] == 'success'
    assert result['status'] == 0
    assert result['attempts'] == 3
    stats = result['latency_ms']
    assert 0 < stats['min'] <= stats['median'] <= stats['max']


def test_wrong_called_aet_is_rejected_with_reason(scp):
    port = scp('ok')
    result = echo_once(port, called_aet='SOMEONE')
    assert result['outcome'] == 'rejected'
    assert result['reason'] == 'rejected-permanent by the called service-user: called AE title not recognised'
    assert result['status'] is None


def test_failure_status_is_bad_status(scp):
    result = echo_once(scp('bad-status'))
    assert result['outcome'] == 'bad_status'
    assert result['status'] == 0xC001
    assert result['reason'] == 'C-ECHO status 0xC001 (Failure)'


def test_peer_abort_is_aborted(scp):
    result = echo_once(scp('abort'))
    assert result['outcome'] == 'aborted'
    assert result['reason'] == 'association aborted by the peer (service-user)'


def test_no_verification_context(scp):
    result = echo_once(scp('no-context'))
    assert result['outcome'] == 'no_accepted_context'
    assert 'abstract syntax not supported' in result['reason']


def test_no_c_echo_response_is_a_dimse_timeout(scp):
    started = time.monotonic()
    result = echo_once(scp('slow'), dimse_timeout=0.5)
    assert result['outcome'] == 'timeout'
    assert result['reason'] == 'no C-ECHO response within 0.5s (dimse_timeout)'
    assert time.monotonic() - started < 5


def test_closed_port_is_refused():
    result = echo_once(free_port())
    assert result['outcome'] == 'refused'
    assert result['reason'] == 'connection refused (nothing listens on that port)'


def test_silent_listener_is_an_acse_timeout():
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(4)
        result = echo_once(listener.getsockname()[1], acse_timeout=0.5)
    assert result['outcome'] == 'timeout'
    assert result['reason'] == 'no answer to the association request within 0.5s (acse_timeout)'


def test_listener_that_hangs_up_is_aborted():
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(4)

        def hang_up():
            conn = listener.accept()[0]
            conn.recv(64)
            conn.close()
        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        result = echo_once(listener.getsockname()[1])
        thread.join(5)
    assert result['outcome'] == 'aborted'
    assert 'closed the connection without answering the association request' in result['reason']


def test_plain_tls_client_against_plain_listener_is_tls_error():
    with socket.socket() as listener:
        listener.bind((LOCALHOST, 0))
        listener.listen(4)

        def answer_garbage():
            conn = listener.accept()[0]
            conn.recv(1024)
            conn.sendall(b'\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00')   # an A-ABORT PDU, not TLS
            time.sleep(0.2)
            conn.close()
        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        result = echo_once(listener.getsockname()[1], tls={'verify': False, 'min_version': 'TLSv1.2'})
        thread.join(5)
    assert result['outcome'] == 'tls_error'
    assert result['reason'].startswith('TLS failure: ')


def test_module_against_in_process_scp(module_calls, scp):  # pylint: disable=unused-argument
    good, bad = scp('ok'), scp('bad-status')
    kind, result = run_module({'peers': [{'host': LOCALHOST, 'port': good}, {'host': LOCALHOST, 'port': bad}],
                               'called_aet': 'UNITSCP', 'fail_on_error': False, 'repeat': 2})
    assert kind is ExitJson
    assert [r['outcome'] for r in result['results']] == ['success', 'bad_status']
    assert result['results'][0]['attempts'] == 2
    assert result['failed_peers'] == ['UNITSCP@127.0.0.1:%d' % bad]
    assert result['changed'] is False


# --- transient rejections are retried within wait, permanent ones are final ---------------------------------

TRANSIENT = 'rejected-transient by the service-provider (presentation): local limit exceeded'


def scripted_echo(outcomes):
    """An echo callable answering the scripted (outcome, reason) pairs in turn."""
    answers = iter(outcomes)

    def echo():
        outcome, reason = next(answers)
        return {'outcome': outcome, 'status': 0 if outcome == 'success' else None, 'reason': reason,
                'latency_ms': 2.0 if outcome == 'success' else None}
    return echo


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


PEER = dict(dicom.DEFAULTS, host=LOCALHOST, called_aet='UNITSCP', tls=None)


def test_transient_rejection_is_retried_with_the_same_delay():
    fake = FakeClock()
    echo = scripted_echo([('rejected', TRANSIENT), ('rejected', TRANSIENT), ('refused', 'connection refused'),
                          ('success', None)])
    result = dicom.run_peer(PEER, wait=10, delay=1.5, echo=echo, clock=fake.clock, sleep=fake.sleep)
    assert result['outcome'] == 'success'
    assert result['attempts'] == 4
    assert result['retried'] == ['rejected: %s (2 times)' % TRANSIENT, 'refused: connection refused']
    assert fake.sleeps == [1.5, 1.5, 1.5]


def test_permanent_rejection_is_final_at_once():
    fake = FakeClock()
    reason = 'rejected-permanent by the called service-user: called AE title not recognised'
    echo = scripted_echo([('rejected', reason), ('success', None)])
    result = dicom.run_peer(PEER, wait=60, delay=1, echo=echo, clock=fake.clock, sleep=fake.sleep)
    assert (result['outcome'], result['reason'], result['attempts'], result['retried']) == ('rejected', reason, 1, [])
    assert fake.sleeps == []


def test_transient_rejection_until_wait_runs_out_reports_it():
    fake = FakeClock()
    echo = scripted_echo([('rejected', TRANSIENT)] * 10)
    result = dicom.run_peer(PEER, wait=3, delay=1, echo=echo, clock=fake.clock, sleep=fake.sleep)
    assert result['outcome'] == 'rejected'
    assert result['reason'] == TRANSIENT
    assert result['attempts'] == 4
    assert result['retried'] == ['rejected: %s (3 times)' % TRANSIENT]


def hold_slot(port, seconds):
    """A bare TCP connection to ``port`` that sends nothing for ``seconds`` (a port probe that stays open)."""
    sock = socket.create_connection((LOCALHOST, port), timeout=3)
    timer = threading.Timer(seconds, sock.close)
    timer.start()
    return timer, sock


def test_full_scp_rejects_transient_without_wait(scp):
    port = scp('ok', maximum_associations=1, acse_timeout=30)
    timer, sock = hold_slot(port, 30)
    try:
        time.sleep(0.3)
        result = echo_once(port)
    finally:
        timer.cancel()
        sock.close()
    assert result['outcome'] == 'rejected'
    assert result['reason'] == TRANSIENT
    assert result['attempts'] == 1
    assert result['retried'] == []


def test_full_scp_answers_within_wait_after_retries(module_calls, scp):  # pylint: disable=unused-argument
    # pynetdicom frees the slot of a connection that sends nothing after its ACSE timeout (2 s here)
    port = scp('ok', maximum_associations=1, acse_timeout=2)
    timer, sock = hold_slot(port, 30)
    try:
        time.sleep(0.3)
        kind, result = run_module({'host': LOCALHOST, 'port': port, 'called_aet': 'UNITSCP', 'wait': 20, 'delay': 1})
    finally:
        timer.cancel()
        sock.close()
    assert kind is ExitJson, result
    peer = result['results'][0]
    assert peer['outcome'] == 'success'
    assert peer['attempts'] >= 2
    assert peer['retried'][0].startswith('rejected: ' + TRANSIENT)
