# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/module_utils/dicom.py: input checks, words for codes, statistics, retries, and how a rejected
association is classified when pynetdicom reports it as aborted."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time

import pytest
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
from pynetdicom.sop_class import Verification

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom


def peer(**overrides):
    base = dict(dicom.DEFAULTS, host='127.0.0.1', tls=None)
    base.update(overrides)
    return base


# --- AE titles ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value', ['ANY-SCP', 'A', 'X' * 16, 'ORTHANC ', 'MY AE', 'STORE_SCP1'])
def test_valid_ae_titles(value):
    assert dicom.ae_title_error(value, 'called_aet') is None


@pytest.mark.parametrize('value, words', [
    ('', 'must not be empty'),
    ('    ', 'must not be empty'),
    (None, 'must be set'),
    ('X' * 17, 'is 17 characters long; an AE title has at most 16'),
    ('BACK\\SLASH', 'printable ASCII'),
    ('TAB\tAE', 'printable ASCII'),
    (u'\u00c9CHO', 'printable ASCII'),
    (104, 'must be a string'),
])
def test_invalid_ae_titles(value, words):
    message = dicom.ae_title_error(value, 'called_aet')
    assert message is not None
    assert message.startswith('called_aet')
    assert words in message


# --- peers -------------------------------------------------------------------------------------------------

def test_good_peer_has_no_problems():
    assert dicom.check_peer(peer()) == []


@pytest.mark.parametrize('overrides, words', [
    (dict(port=0), 'port 0 is out of range (1-65535)'),
    (dict(port=65536), 'port 65536 is out of range'),
    (dict(port=-4), 'port -4 is out of range'),
    (dict(port=True), 'port True is out of range'),
    (dict(host=''), 'host must not be empty'),
    (dict(host='  '), 'host must not be empty'),
    (dict(called_aet=''), 'called_aet must not be empty'),
    (dict(calling_aet='ABCDEFGHIJKLMNOPQ'), 'calling_aet'),
    (dict(connect_timeout=0), 'connect_timeout must be a number of seconds above 0'),
    (dict(acse_timeout=-1.0), 'acse_timeout must be'),
    (dict(dimse_timeout=None), 'dimse_timeout must be'),
    (dict(max_pdu=100), 'max_pdu must be 0 (no limit) or 4096-4294967295'),
    (dict(max_pdu=2 ** 32), 'max_pdu must be'),
])
def test_bad_peer_settings(overrides, words):
    problems = dicom.check_peer(peer(**overrides))
    assert len(problems) == 1, problems
    assert words in problems[0]
    assert problems[0].startswith('peer ')


@pytest.mark.parametrize('max_pdu', [0, 4096, 16382, 0xFFFFFFFF])
def test_max_pdu_limits(max_pdu):
    assert dicom.check_peer(peer(max_pdu=max_pdu)) == []


def test_several_problems_are_all_reported():
    problems = dicom.check_peer(peer(port=0, called_aet='', calling_aet='X' * 20))
    assert len(problems) == 3


def test_tls_files_must_exist(tmp_path):
    present = tmp_path / 'ca.pem'
    present.write_text('x')
    problems = dicom.check_tls({'ca_file': str(present), 'cert_file': str(tmp_path / 'missing.pem')}, 'peer P')
    assert problems == ['peer P: tls.cert_file %s does not exist or is not a file' % (tmp_path / 'missing.pem')]


def test_tls_key_needs_certificate(tmp_path):
    key = tmp_path / 'k.pem'
    key.write_text('x')
    assert dicom.check_tls({'key_file': str(key)}, 'peer P') == ['peer P: tls.key_file needs tls.cert_file']


def test_tls_directory_is_not_a_file(tmp_path):
    problems = dicom.check_tls({'ca_file': str(tmp_path)}, 'peer P')
    assert 'does not exist or is not a file' in problems[0]


def test_tls_bad_min_version():
    assert 'tls.min_version must be one of TLSv1.2, TLSv1.3' in dicom.check_tls({'min_version': 'SSLv3'}, 'p')[0]


def test_tls_context_error_names_unusable_pem(tmp_path):
    bogus = tmp_path / 'ca.pem'
    bogus.write_text('this is not a certificate\n')
    message = dicom.tls_context_error({'ca_file': str(bogus), 'verify': True}, 'peer P')
    assert message.startswith('peer P: the TLS files cannot be used: ')


def test_tls_context_without_verification():
    context = dicom.build_ssl_context({'verify': False, 'min_version': 'TLSv1.3'})
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_tls_context_with_verification_checks_host_name():
    context = dicom.build_ssl_context({'verify': True})
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_no_tls_is_no_error():
    assert dicom.tls_context_error(None, 'p') is None
    assert dicom.check_tls(None, 'p') == []


def test_merge_peers_inherits_task_settings():
    params = dict(host=None, port=4242, called_aet='ANY', calling_aet='ME', connect_timeout=None, acse_timeout=5.0,
                  dimse_timeout=None, max_pdu=None, tls={'verify': False},
                  peers=[{'host': 'a', 'port': None, 'called_aet': 'A'},
                         {'host': 'b', 'port': 11112, 'tls': {'verify': True}}])
    merged = dicom.merge_peers(params)
    assert [(p['host'], p['port'], p['called_aet'], p['calling_aet']) for p in merged] == [
        ('a', 4242, 'A', 'ME'), ('b', 11112, 'ANY', 'ME')]
    assert merged[0]['tls'] == {'verify': False}
    assert merged[1]['tls'] == {'verify': True}
    assert merged[0]['connect_timeout'] == dicom.DEFAULTS['connect_timeout']
    assert merged[0]['acse_timeout'] == 5.0


def test_merge_single_host():
    merged = dicom.merge_peers(dict(host='pacs', port=104, called_aet='PACS', calling_aet='ECHOSCU'))
    assert len(merged) == 1
    assert merged[0]['host'] == 'pacs'
    assert merged[0]['called_aet'] == 'PACS'


@pytest.mark.parametrize('wait, delay, repeat, count', [
    (0, 1, 1, 0), (10, 0.5, 50, 0), (-1, 1, 1, 1), (0, 0, 1, 1), (0, 1, 0, 1), (-1, -1, 0, 3)])
def test_check_run(wait, delay, repeat, count):
    assert len(dicom.check_run(wait, delay, repeat)) == count


# --- words for codes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('result, source, diagnostic, text', [
    (1, 1, 7, 'rejected-permanent by the called service-user: called AE title not recognised'),
    (1, 1, 3, 'rejected-permanent by the called service-user: calling AE title not recognised'),
    (1, 1, 1, 'rejected-permanent by the called service-user: no reason given'),
    (1, 1, 2, 'rejected-permanent by the called service-user: application context name not supported'),
    (1, 2, 2, 'rejected-permanent by the service-provider (ACSE): protocol version not supported'),
    (2, 3, 1, 'rejected-transient by the service-provider (presentation): temporary congestion'),
    (2, 3, 2, 'rejected-transient by the service-provider (presentation): local limit exceeded'),
    (1, 1, 5, 'rejected-permanent by the called service-user: reserved diagnostic 0x05'),
    (9, 7, 1, 'rejected (result 0x09) by an unknown source (0x07): reserved diagnostic 0x01'),
])
def test_reject_reason(result, source, diagnostic, text):
    assert dicom.reject_reason(result, source, diagnostic) == text


@pytest.mark.parametrize('source, reason, text', [
    (0, 0, 'association aborted by the peer (service-user)'),
    (2, 1, "association aborted by the peer's service-provider: unrecognised PDU"),
    (2, 6, "association aborted by the peer's service-provider: invalid PDU parameter value"),
    (2, 3, "association aborted by the peer's service-provider: reserved reason 0x03"),
    (5, 0, 'association aborted by an unknown source (0x05)'),
])
def test_abort_reason(source, reason, text):
    assert dicom.abort_reason(source, reason) == text


@pytest.mark.parametrize('results, words', [
    ([3], '(abstract syntax not supported)'),
    ([4, 4], '(transfer syntaxes not supported)'),
    ([1, 3], '(abstract syntax not supported; rejected by the user)'),
    ([], 'the peer accepted no presentation context for the Verification SOP class'),
])
def test_context_reason(results, words):
    assert words in dicom.context_reason(results)


@pytest.mark.parametrize('code, text', [
    (0x0000, 'C-ECHO status 0x0000 (Success)'),
    (0x0122, 'C-ECHO status 0x0122 (Refused: SOP class not supported)'),
    (0x0211, 'C-ECHO status 0x0211 (Refused: unrecognised operation)'),
    (0xC001, 'C-ECHO status 0xC001 (Failure)'),
    (0xA700, 'C-ECHO status 0xA700 (Failure)'),
    (0xB000, 'C-ECHO status 0xB000 (Warning)'),
    (0xFF00, 'C-ECHO status 0xFF00 (Pending)'),
    (0xFE00, 'C-ECHO status 0xFE00 (Cancel)'),
])
def test_status_reason(code, text):
    assert dicom.status_reason(code) == text


@pytest.mark.parametrize('values, stats', [
    ([], {'min': None, 'median': None, 'max': None}),
    ([3.14159], {'min': 3.142, 'median': 3.142, 'max': 3.142}),
    ([10.0, 1.0, 2.0], {'min': 1.0, 'median': 2.0, 'max': 10.0}),
    ([4.0, 1.0, 3.0, 2.0], {'min': 1.0, 'median': 2.5, 'max': 4.0}),
])
def test_latency_stats(values, stats):
    assert dicom.latency_stats(values) == stats


def _verify_error():
    exc = ssl.SSLCertVerificationError(1, 'certificate verify failed')
    exc.verify_message = 'unable to get local issuer certificate'
    return exc


@pytest.mark.parametrize('exc, tls, connected, outcome, words', [
    (ConnectionRefusedError(errno.ECONNREFUSED, 'Connection refused'), False, False, 'refused', 'connection refused'),
    (ConnectionRefusedError(errno.ECONNREFUSED, 'Connection refused'), True, False, 'refused', 'connection refused'),
    (socket.timeout('timed out'), False, False, 'timeout', 'no TCP connection within 2.5s'),
    (socket.timeout('timed out'), True, True, 'timeout', 'TLS handshake did not complete within 2.5s'),
    (socket.gaierror(socket.EAI_NONAME, 'Name or service not known'), False, False, 'refused',
     'cannot resolve the host name: Name or service not known'),
    (OSError(errno.EHOSTUNREACH, 'No route to host'), False, False, 'refused', 'cannot connect: No route to host'),
    (ConnectionResetError(errno.ECONNRESET, 'Connection reset by peer'), True, True, 'tls_error',
     'the peer closed the connection during the handshake'),
    (ssl.SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number'), True, True, 'tls_error', 'wrong version number'),
    (_verify_error(), True, True, 'tls_error', 'certificate verify failed: unable to get local issuer certificate'),
])
def test_classify_socket_error(exc, tls, connected, outcome, words):
    got_outcome, reason = dicom.classify_socket_error(exc, tls, connected, 2.5)
    assert got_outcome == outcome
    assert words in reason


def test_every_outcome_is_documented_in_the_module():
    from ansible_collections.clinops.upgrade.plugins.modules import dicom_echo
    for outcome in dicom.OUTCOMES:
        assert 'V(%s)' % outcome in dicom_echo.RETURN


# --- retries and repeats (fake echo, fake clock) -----------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(outcomes, clock=None, cost=0.0):
    """An echo callable returning the given outcomes in order (the last one forever)."""
    state = {'calls': 0}

    def echo():
        index = min(state['calls'], len(outcomes) - 1)
        state['calls'] += 1
        if clock is not None:
            clock.now += cost
        outcome = outcomes[index]
        if outcome == 'success':
            return {'outcome': 'success', 'status': 0, 'reason': None, 'latency_ms': float(state['calls'])}
        return {'outcome': outcome, 'status': 0x0122 if outcome == 'bad_status' else None, 'reason': 'because',
                'latency_ms': None}
    echo.state = state
    return echo


def test_single_success():
    result = dicom.run_peer(peer(), echo=scripted(['success']))
    assert result['outcome'] == 'success'
    assert result['attempts'] == 1
    assert result['status'] == 0
    assert result['reason'] is None
    assert result['latency_ms'] == {'min': 1.0, 'median': 1.0, 'max': 1.0}


def test_failure_without_wait_is_tried_once():
    clock = FakeClock()
    echo = scripted(['refused'])
    result = dicom.run_peer(peer(), wait=0, delay=1, echo=echo, clock=clock.clock, sleep=clock.sleep)
    assert result['outcome'] == 'refused'
    assert result['reason'] == 'because'
    assert result['attempts'] == 1
    assert clock.sleeps == []
    assert result['latency_ms']['median'] is None


def test_wait_retries_until_success():
    clock = FakeClock()
    echo = scripted(['refused', 'refused', 'timeout', 'success'])
    result = dicom.run_peer(peer(), wait=10, delay=2, echo=echo, clock=clock.clock, sleep=clock.sleep)
    assert result['outcome'] == 'success'
    assert result['attempts'] == 4
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_wait_gives_up_at_the_deadline():
    clock = FakeClock()
    echo = scripted(['refused'])
    result = dicom.run_peer(peer(), wait=5, delay=2, echo=echo, clock=clock.clock, sleep=clock.sleep)
    assert result['outcome'] == 'refused'
    assert result['attempts'] == 3          # t=0, 2, 4; t=6 would pass the deadline
    assert clock.now == 4.0


def test_wait_counts_time_spent_in_echoes():
    clock = FakeClock()
    echo = scripted(['timeout'], clock=clock, cost=3.0)
    result = dicom.run_peer(peer(), wait=7, delay=1, echo=echo, clock=clock.clock, sleep=clock.sleep)
    assert result['outcome'] == 'timeout'
    assert result['attempts'] == 2          # 0-3, sleep 1, 4-7, then 8 > 7


def test_repeat_collects_statistics():
    result = dicom.run_peer(peer(), repeat=5, echo=scripted(['success']))
    assert result['outcome'] == 'success'
    assert result['attempts'] == 5
    assert result['latency_ms'] == {'min': 1.0, 'median': 3.0, 'max': 5.0}


def test_failure_after_success_is_final_even_with_wait():
    clock = FakeClock()
    echo = scripted(['success', 'success', 'bad_status', 'success'])
    result = dicom.run_peer(peer(), wait=60, repeat=4, echo=echo, clock=clock.clock, sleep=clock.sleep)
    assert result['outcome'] == 'bad_status'
    assert result['status'] == 0x0122
    assert result['attempts'] == 3
    assert result['latency_ms'] == {'min': 1.0, 'median': 1.5, 'max': 2.0}
    assert clock.sleeps == []


def test_run_peers_keeps_order_and_runs_concurrently():
    barrier = threading.Barrier(3, timeout=5)

    def runner(one, wait, delay, repeat):
        barrier.wait()   # only passes when the three peers run at the same time
        return {'host': one['host'], 'outcome': 'success', 'args': (wait, delay, repeat)}

    peers = [peer(host=name) for name in ('a', 'b', 'c')]
    results = dicom.run_peers(peers, wait=1, delay=2, repeat=3, runner=runner)
    assert [r['host'] for r in results] == ['a', 'b', 'c']
    assert results[0]['args'] == (1, 2, 3)


def test_run_peers_caps_the_worker_count():
    active = {'now': 0, 'max': 0}
    lock = threading.Lock()

    def runner(one, wait, delay, repeat):
        with lock:
            active['now'] += 1
            active['max'] = max(active['max'], active['now'])
        time.sleep(0.02)
        with lock:
            active['now'] -= 1
        return {'host': one['host']}

    results = dicom.run_peers([peer(host=str(i)) for i in range(12)], runner=runner, max_workers=4)
    assert len(results) == 12
    assert active['max'] <= 4


def test_failure_message_names_each_failed_peer():
    results = [
        {'host': 'h1', 'port': 104, 'called_aet': 'A', 'outcome': 'success', 'reason': None},
        {'host': 'h2', 'port': 4242, 'called_aet': 'B', 'outcome': 'rejected', 'reason': 'no'},
        {'host': 'h3', 'port': 11112, 'called_aet': 'C', 'outcome': 'refused', 'reason': 'closed'},
    ]
    assert dicom.failure_message(results) == (
        '2 of 3 DICOM peers failed the C-ECHO: B@h2:4242 rejected (no); C@h3:11112 refused (closed)')
    assert dicom.failure_message(results[1:2]) == '1 of 1 DICOM peer failed the C-ECHO: B@h2:4242 rejected (no)'


# --- a rejection that pynetdicom reports as an abort -------------------------------------------------------
#
# On an A-ASSOCIATE-RJ, pynetdicom's DUL thread queues the rejection and closes the socket (PS3.8 AE-4).
# When that happens before AE.associate() has looked at the socket (a fast peer such as Orthanc), pynetdicom
# finds it closed, aborts, and never reads the queued rejection: the association says is_aborted, not
# is_rejected.  The received A-ASSOCIATE-RJ PDU must still make the outcome "rejected", with its reason.

CALLED_AE_REJECT = 'rejected-permanent by the called service-user: called AE title not recognised'


def _pdu(cls, data):
    pdu = cls()
    pdu.decode(data)
    return pdu


def _reject_pdu(result=1, source=1, diagnostic=7):
    return _pdu(A_ASSOCIATE_RJ, bytes([0x03, 0, 0, 0, 0, 4, 0, result, source, diagnostic]))


def _abort_pdu(source=0, reason=0):
    return _pdu(A_ABORT_RQ, bytes([0x07, 0, 0, 0, 0, 4, 0, 0, source, reason]))


def _aborted_association(echo):
    """A requestor association in the state pynetdicom leaves it after the race: aborted, no answer kept."""
    assoc = Association(echo.ae, 'requestor')
    assoc.is_aborted = True
    assert not assoc.is_rejected and assoc.acceptor.primitive is None
    return assoc


@pytest.mark.parametrize('then', ['connection closed', 'we sent an abort', 'peer sent an abort', 'socket error'])
@pytest.mark.parametrize('tls', [None, {'verify': False}])
def test_received_reject_is_rejected_whatever_follows(then, tls):
    echo = dicom.PeerEcho(peer(port=4242, called_aet='WRONG', tls=tls))
    assoc = _aborted_association(echo)
    trace = dicom._Trace()  # pylint: disable=protected-access
    trace.on_pdu_recv(evt.Event(assoc, evt.EVT_PDU_RECV, {'pdu': _reject_pdu()}))
    if then == 'we sent an abort':
        trace.on_pdu_sent(evt.Event(assoc, evt.EVT_PDU_SENT, {'pdu': _abort_pdu(source=2)}))
    elif then == 'peer sent an abort':
        trace.on_pdu_recv(evt.Event(assoc, evt.EVT_PDU_RECV, {'pdu': _abort_pdu()}))
    elif then == 'socket error':
        trace.record(ConnectionResetError(errno.ECONNRESET, 'Connection reset by peer'), True)
    outcome, reason = echo._association_failure(assoc, trace, 0.01)  # pylint: disable=protected-access
    assert (outcome, reason) == ('rejected', CALLED_AE_REJECT)


def test_reject_reason_comes_from_the_received_pdu():
    echo = dicom.PeerEcho(peer(port=4242))
    assoc = _aborted_association(echo)
    trace = dicom._Trace()  # pylint: disable=protected-access
    trace.on_pdu_recv(evt.Event(assoc, evt.EVT_PDU_RECV, {'pdu': _reject_pdu(2, 3, 1)}))
    assert trace.rejects == [(2, 3, 1)]
    assert echo._association_failure(assoc, trace, 0.01) == (  # pylint: disable=protected-access
        'rejected', 'rejected-transient by the service-provider (presentation): temporary congestion')


def test_abort_without_reject_is_still_aborted():
    echo = dicom.PeerEcho(peer(port=4242))
    assoc = _aborted_association(echo)
    trace = dicom._Trace()  # pylint: disable=protected-access
    trace.on_pdu_recv(evt.Event(assoc, evt.EVT_PDU_RECV, {'pdu': _abort_pdu()}))
    assert trace.rejects == []
    assert echo._association_failure(assoc, trace, 0.01) == (  # pylint: disable=protected-access
        'aborted', 'association aborted by the peer (service-user)')


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_rejection_that_pynetdicom_calls_an_abort_is_rejected():
    """The race, forced: a real pynetdicom SCP rejects, and AE.associate() looks only after the socket closed."""
    scp = AE(ae_title='UNITSCP')
    scp.require_called_aet = True
    scp.add_supported_context(Verification)
    port = _free_port()
    server = scp.start_server(('127.0.0.1', port), block=False)
    try:
        dicom.quiet_pynetdicom()
        echo = dicom.PeerEcho(peer(port=port, called_aet='SOMEONE', connect_timeout=5, acse_timeout=5))
        closed = threading.Event()
        seen = {}
        real_associate = echo.ae.associate

        def associate(*args, **kwargs):
            # EVT_REQUESTED runs in this thread just before pynetdicom checks the socket; hold it there until
            # the DUL thread has received the A-ASSOCIATE-RJ and closed the connection (EVT_CONN_CLOSE).
            handlers = list(kwargs.pop('evt_handlers')) + [(evt.EVT_CONN_CLOSE, lambda event: closed.set()),
                                                           (evt.EVT_REQUESTED, lambda event: closed.wait(20))]
            seen['assoc'] = real_associate(*args, evt_handlers=handlers, **kwargs)
            return seen['assoc']

        echo.ae.associate = associate
        result = echo.once()
    finally:
        server.shutdown()
    assert closed.is_set()
    # pynetdicom itself missed the rejection: without the received PDU this would read "aborted"
    assert seen['assoc'].is_aborted and not seen['assoc'].is_rejected
    assert result == {'outcome': 'rejected', 'status': None, 'reason': CALLED_AE_REJECT, 'latency_ms': None}
