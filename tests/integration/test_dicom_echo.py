"""clinops.upgrade.dicom_echo through real ansible-playbook runs against real DICOM peers.

Peers (tests/integration/dicom_peers.py), all started here on free loopback ports and stopped by PID:
dcmtk storescp (plain and TLS with certificates made by the tests), Orthanc with DicomCheckCalledAet on,
and pynetdicom SCPs in child processes for the abort, failure-status, no-answer and no-context cases.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import dicom_peers
from harness import ROOT, ansible_env, run_task

MODULE = 'clinops.upgrade.dicom_echo'
LOCALHOST = dicom_peers.LOCALHOST
NO_LATENCY = {'min': None, 'median': None, 'max': None}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('dicom-echo'))


@pytest.fixture(scope='module')
def peers(workdir):
    """Every long-lived peer of this file, started once; stopped by PID at the end."""
    started = {}
    try:
        pki = dicom_peers.make_pki(workdir)
        started['storescp'] = dicom_peers.start_storescp(workdir, aet='STORESCP')
        started['tls'] = dicom_peers.start_storescp(workdir, aet='TLSSCP', tls=pki)
        started['orthanc'] = dicom_peers.start_orthanc(workdir, aet='ORTHANC')
        for mode in ('bad-status', 'abort', 'slow', 'no-context', 'silent'):
            started[mode] = dicom_peers.start_pynetdicom_scp(workdir, mode=mode)
        started['pki'] = pki
        yield started
    finally:
        for name, peer in started.items():
            if name != 'pki':
                peer.stop()


def echo(args, **kwargs):
    return run_task(MODULE, args, **kwargs)


def only(result):
    assert len(result['results']) == 1, result
    return result['results'][0]


def assert_success(one, peer, tls=False):
    assert one['outcome'] == 'success', one
    assert one['status'] == 0
    assert one['reason'] is None
    assert one['host'] == LOCALHOST
    assert one['port'] == peer.port
    assert one['called_aet'] == peer.aet
    assert one['tls'] is tls
    stats = one['latency_ms']
    assert 0 < stats['min'] <= stats['median'] <= stats['max']


def assert_failed(result, outcome, peer_label):
    assert result.get('failed') is True, result
    assert result['changed'] is False
    assert result['failed_peers'] == [peer_label]
    assert '%s %s' % (peer_label, outcome) in result['msg']
    one = only(result)
    assert one['outcome'] == outcome
    assert one['latency_ms'] == NO_LATENCY
    return one


# --- success -----------------------------------------------------------------------------------------------

def test_storescp_answers(peers):
    peer = peers['storescp']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'STORESCP'})
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert result['failed_peers'] == []
    assert result['msg'] == '1 DICOM peer answered the C-ECHO with success'
    one = only(result)
    assert_success(one, peer)
    assert one['attempts'] == 1
    assert one['calling_aet'] == 'ECHOSCU'
    assert peer.alive()


def test_check_mode_echoes_too(peers):
    peer = peers['storescp']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'STORESCP'}, check=True)
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert_success(only(result), peer)
    # check mode really talks to the peer: a closed port fails in check mode as well
    port = dicom_peers.free_port()
    result = echo({'host': LOCALHOST, 'port': port}, check=True)
    assert_failed(result, 'refused', 'ANY-SCP@127.0.0.1:%d' % port)


def test_orthanc_with_right_called_aet(peers):
    peer = peers['orthanc']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'ORTHANC', 'calling_aet': 'UPGRADE'})
    assert not result.get('failed'), result
    assert_success(only(result), peer)
    assert only(result)['calling_aet'] == 'UPGRADE'


def test_repeat_gives_latency_statistics(peers):
    peer = peers['storescp']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'STORESCP', 'repeat': 10})
    assert not result.get('failed'), result
    one = only(result)
    assert_success(one, peer)
    assert one['attempts'] == 10


# --- failures, each classified -----------------------------------------------------------------------------

def test_orthanc_rejects_a_wrong_called_aet_with_the_reason(peers):
    peer = peers['orthanc']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'NOT-ORTHANC'})
    one = assert_failed(result, 'rejected', 'NOT-ORTHANC@127.0.0.1:%d' % peer.port)
    assert one['reason'] == 'rejected-permanent by the called service-user: called AE title not recognised'
    assert one['status'] is None
    assert one['reason'] in result['msg']
    assert peer.alive()


def test_closed_port_is_refused():
    port = dicom_peers.free_port()
    result = echo({'host': LOCALHOST, 'port': port, 'called_aet': 'NOBODY'})
    one = assert_failed(result, 'refused', 'NOBODY@127.0.0.1:%d' % port)
    assert one['reason'] == 'connection refused (nothing listens on that port)'


def test_peer_abort_is_aborted(peers):
    peer = peers['abort']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'PYSCP'})
    one = assert_failed(result, 'aborted', 'PYSCP@127.0.0.1:%d' % peer.port)
    assert one['reason'] == 'association aborted by the peer (service-user)'


def test_failure_status_is_bad_status(peers):
    peer = peers['bad-status']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'PYSCP'})
    one = assert_failed(result, 'bad_status', 'PYSCP@127.0.0.1:%d' % peer.port)
    assert one['status'] == 0x0122
    assert one['reason'] == 'C-ECHO status 0x0122 (Refused: SOP class not supported)'


def test_no_c_echo_response_is_a_timeout(peers):
    peer = peers['slow']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'PYSCP', 'dimse_timeout': 1})
    one = assert_failed(result, 'timeout', 'PYSCP@127.0.0.1:%d' % peer.port)
    assert one['reason'] == 'no C-ECHO response within 1.0s (dimse_timeout)'


def test_silent_peer_is_an_association_timeout(peers):
    peer = peers['silent']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'acse_timeout': 1})
    one = assert_failed(result, 'timeout', 'ANY-SCP@127.0.0.1:%d' % peer.port)
    assert one['reason'] == 'no answer to the association request within 1.0s (acse_timeout)'


def test_no_verification_context(peers):
    peer = peers['no-context']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'PYSCP'})
    one = assert_failed(result, 'no_accepted_context', 'PYSCP@127.0.0.1:%d' % peer.port)
    assert one['reason'] == ('the peer accepted no presentation context for the Verification SOP class '
                             '(abstract syntax not supported)')


# --- TLS (dcmtk storescp +tls, requiring a client certificate from our CA) ---------------------------------

def tls_args(peers, **tls):
    peer = peers['tls']
    pki = peers['pki']
    settings = {'ca_file': pki['ca_cert'], 'cert_file': pki['client_cert'], 'key_file': pki['client_key']}
    settings.update(tls)
    return {'host': LOCALHOST, 'port': peer.port, 'called_aet': 'TLSSCP', 'tls': settings}


def test_tls_verified(peers):
    result = echo(tls_args(peers))
    assert not result.get('failed'), result
    assert_success(only(result), peers['tls'], tls=True)


def test_tls_verified_by_host_name_and_tls13(peers):
    args = tls_args(peers, min_version='TLSv1.3')
    args['host'] = 'localhost'
    result = echo(args)
    assert not result.get('failed'), result
    assert only(result)['outcome'] == 'success'
    assert only(result)['host'] == 'localhost'


def test_tls_without_verification_accepts_an_unknown_ca(peers):
    result = echo(tls_args(peers, ca_file=peers['pki']['other_ca_cert'], verify=False))
    assert not result.get('failed'), result
    assert_success(only(result), peers['tls'], tls=True)


def test_tls_wrong_ca_is_tls_error(peers):
    result = echo(tls_args(peers, ca_file=peers['pki']['other_ca_cert']))
    one = assert_failed(result, 'tls_error', 'TLSSCP@127.0.0.1:%d' % peers['tls'].port)
    assert one['reason'].startswith('TLS failure: certificate verify failed')


def test_tls_without_client_certificate_is_tls_error(peers):
    result = echo(tls_args(peers, cert_file=None, key_file=None))
    one = assert_failed(result, 'tls_error', 'TLSSCP@127.0.0.1:%d' % peers['tls'].port)
    assert one['reason'].startswith('TLS failure: ')
    assert one['reason'].endswith('does the peer require a client certificate (tls.cert_file)?')


def test_tls_client_against_plain_peer_is_tls_error(peers):
    args = tls_args(peers)
    args.update(port=peers['storescp'].port, called_aet='STORESCP')
    result = echo(args)
    one = assert_failed(result, 'tls_error', 'STORESCP@127.0.0.1:%d' % peers['storescp'].port)
    assert one['reason'].startswith('TLS failure: ')


def test_plain_client_against_tls_peer_is_aborted(peers):
    peer = peers['tls']
    result = echo({'host': LOCALHOST, 'port': peer.port, 'called_aet': 'TLSSCP'})
    one = assert_failed(result, 'aborted', 'TLSSCP@127.0.0.1:%d' % peer.port)
    assert '(does it expect TLS?)' in one['reason']


# --- several peers, waiting, reporting -----------------------------------------------------------------------

def test_several_peers_in_one_task(peers):
    closed = dicom_peers.free_port()
    tls = tls_args(peers)
    result = echo({
        'calling_aet': 'UPGRADE',
        'fail_on_error': False,
        'peers': [
            {'host': LOCALHOST, 'port': peers['storescp'].port, 'called_aet': 'STORESCP'},
            {'host': LOCALHOST, 'port': peers['orthanc'].port, 'called_aet': 'ORTHANC'},
            {'host': LOCALHOST, 'port': peers['orthanc'].port, 'called_aet': 'WRONG'},
            {'host': LOCALHOST, 'port': closed, 'called_aet': 'CLOSED'},
            {'host': LOCALHOST, 'port': peers['bad-status'].port, 'called_aet': 'PYSCP'},
            {'host': LOCALHOST, 'port': peers['tls'].port, 'called_aet': 'TLSSCP', 'tls': tls['tls']},
        ],
    })
    assert not result.get('failed'), result
    assert result['changed'] is False
    outcomes = [(r['called_aet'], r['outcome']) for r in result['results']]
    assert outcomes == [('STORESCP', 'success'), ('ORTHANC', 'success'), ('WRONG', 'rejected'),
                        ('CLOSED', 'refused'), ('PYSCP', 'bad_status'), ('TLSSCP', 'success')]
    assert all(r['calling_aet'] == 'UPGRADE' for r in result['results'])
    assert [r['tls'] for r in result['results']] == [False] * 5 + [True]
    assert result['failed_peers'] == ['WRONG@127.0.0.1:%d' % peers['orthanc'].port, 'CLOSED@127.0.0.1:%d' % closed,
                                      'PYSCP@127.0.0.1:%d' % peers['bad-status'].port]
    assert result['msg'].startswith('3 of 6 DICOM peers failed the C-ECHO: ')


def test_several_peers_fail_the_task_naming_each(peers):
    closed = dicom_peers.free_port()
    result = echo({'peers': [
        {'host': LOCALHOST, 'port': peers['storescp'].port, 'called_aet': 'STORESCP'},
        {'host': LOCALHOST, 'port': closed},
        {'host': LOCALHOST, 'port': peers['abort'].port, 'called_aet': 'PYSCP'},
    ]})
    assert result.get('failed') is True
    assert result['msg'] == (
        '2 of 3 DICOM peers failed the C-ECHO: ANY-SCP@127.0.0.1:%d refused (connection refused (nothing listens on '
        'that port)); PYSCP@127.0.0.1:%d aborted (association aborted by the peer (service-user))'
        % (closed, peers['abort'].port))
    assert [r['outcome'] for r in result['results']] == ['success', 'refused', 'aborted']


def _module_is_running(name):
    """True while a process runs the AnsiballZ wrapper of module ``name``."""
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                if ('AnsiballZ_%s' % name).encode() in handle.read():
                    return True
        except OSError:
            continue
    return False


@pytest.mark.serial  # it waits for any dicom_echo module process on the machine to start
def test_wait_for_a_peer_that_starts_late(workdir):
    port = dicom_peers.free_port()
    late = {}
    stop = threading.Event()

    def start_late():
        # Start the peer 2 s after the module itself is running (not after ansible-playbook started,
        # whose start-up time varies), so the module must have been refused several times first.
        while not stop.is_set() and not _module_is_running('dicom_echo'):
            time.sleep(0.05)
        if not stop.wait(2.0):
            late['peer'] = dicom_peers.start_storescp(workdir, aet='LATE', port=port, wait=False)

    thread = threading.Thread(target=start_late)
    thread.start()
    try:
        result = echo({'host': LOCALHOST, 'port': port, 'called_aet': 'LATE', 'wait': 60, 'delay': 0.5})
    finally:
        stop.set()
        thread.join()
        if 'peer' in late:
            late['peer'].stop()
    assert 'peer' in late
    assert not result.get('failed'), result
    one = only(result)
    assert one['outcome'] == 'success'
    assert one['attempts'] >= 3          # refused for ~2 s at a 0.5 s delay before storescp listened


def test_without_wait_a_late_peer_fails():
    port = dicom_peers.free_port()
    result = echo({'host': LOCALHOST, 'port': port, 'wait': 0})
    assert only(result)['attempts'] == 1
    assert only(result)['outcome'] == 'refused'


def test_wait_gives_up(peers):
    port = dicom_peers.free_port()
    result = echo({'host': LOCALHOST, 'port': port, 'wait': 2, 'delay': 0.5})
    one = assert_failed(result, 'refused', 'ANY-SCP@127.0.0.1:%d' % port)
    assert 3 <= one['attempts'] <= 6


def test_fail_on_error_false_only_reports():
    port = dicom_peers.free_port()
    result = echo({'host': LOCALHOST, 'port': port, 'fail_on_error': False})
    assert not result.get('failed'), result
    assert result['changed'] is False
    assert result['failed_peers'] == ['ANY-SCP@127.0.0.1:%d' % port]
    assert only(result)['outcome'] == 'refused'
    assert 'failed the C-ECHO' in result['msg']


# --- bad input: a clear message, no traceback, no traffic ------------------------------------------------------

@pytest.mark.parametrize('args, words', [
    ({'host': LOCALHOST, 'port': 70000}, 'port 70000 is out of range (1-65535)'),
    ({'host': LOCALHOST, 'called_aet': ''}, 'called_aet must not be empty'),
    ({'host': LOCALHOST, 'calling_aet': 'SEVENTEEN-CHARSXX'}, 'an AE title has at most 16'),
    ({'host': LOCALHOST, 'tls': {'ca_file': '/nonexistent/ca.pem'}}, 'tls.ca_file /nonexistent/ca.pem does not exist'),
    ({'host': LOCALHOST, 'peers': [{'host': LOCALHOST}]}, 'mutually exclusive: host|peers'),
    ({'port': 104}, 'one of the following is required: host, peers'),
])
def test_bad_input(args, words):
    result = echo(args)
    assert result.get('failed') is True
    assert words in result['msg']
    assert 'Traceback' not in json.dumps(result)     # ansible-core 2.19 sets exception='(traceback unavailable)'
    assert 'module_stderr' not in result
    assert 'results' not in result


def test_module_stdout_is_only_json(tmp_path, peers):
    """pynetdicom logs every failure; none of it may reach the module's stdout."""
    args = {'ANSIBLE_MODULE_ARGS': {'peers': [
        {'host': LOCALHOST, 'port': dicom_peers.free_port()},
        {'host': LOCALHOST, 'port': peers['abort'].port, 'called_aet': 'PYSCP'},
        {'host': LOCALHOST, 'port': peers['orthanc'].port, 'called_aet': 'WRONG'},
    ], 'fail_on_error': False}}
    path = tmp_path / 'args.json'
    path.write_text(json.dumps(args))
    env = ansible_env({'PYTHONPATH': os.path.join(ROOT, 'build', 'collections')})
    proc = subprocess.run([sys.executable, '-m', 'ansible_collections.clinops.upgrade.plugins.modules.dicom_echo',
                           str(path)], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc
    data = json.loads(proc.stdout)      # raises if anything but one JSON document is printed
    assert [r['outcome'] for r in data['results']] == ['refused', 'aborted', 'rejected']
    assert proc.stderr == ''


def test_orthanc_rejection_is_never_reported_as_aborted(peers):
    """Orthanc answers a wrong called AE title with A-ASSOCIATE-RJ so fast that pynetdicom 3.0 sometimes finds the
    connection already closed and calls the association aborted; the module must still say rejected.

    32 entries, all in flight at once (the module's MAX_WORKERS). Measured without the fix: 10 of 1280 echoes
    aborted, 8 of 40 such tasks had one, so this catches a regression only sometimes; the deterministic check is
    test_rejection_that_pynetdicom_calls_an_abort_is_rejected in tests/unit/plugins/module_utils/test_dicom.py.
    """
    peer = peers['orthanc']
    count = 32
    result = echo({'fail_on_error': False,
                   'peers': [{'host': LOCALHOST, 'port': peer.port, 'called_aet': 'NOT-ORTHANC'}] * count})
    assert not result.get('failed'), result
    assert len(result['results']) == count
    assert [(r['outcome'], r['reason']) for r in result['results']] == [
        ('rejected', 'rejected-permanent by the called service-user: called AE title not recognised')] * count
    assert result['failed_peers'] == ['NOT-ORTHANC@127.0.0.1:%d' % peer.port] * count
    assert peer.alive()


def orthanc_connections(port):
    """Established TCP connections to Orthanc's DICOM port, from ``ss``."""
    out = subprocess.run(['ss', '-Htn', 'state', 'established', '( sport = :%d )' % port], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def test_orthanc_is_stalled_by_half_open_probes_not_by_the_gentle_ones(peers):
    """Orthanc 1.10 has no association limit to reject with; a connection that sends nothing stalls it instead
    (until DicomScpTimeout, 30 s), so a C-ECHO meanwhile gets no answer. service_stop_ordered's probe closes at once:
    ten of them leave no connection behind (ss) and the C-ECHO right after is answered."""
    from ansible_collections.clinops.upgrade.plugins.module_utils import dicom  # pylint: disable=import-outside-toplevel
    from ansible_collections.clinops.upgrade.plugins.module_utils.service import procs as service_procs  # pylint: disable=import-outside-toplevel
    dicom.quiet_pynetdicom()
    port = peers['orthanc'].port
    peer = dict(dicom.DEFAULTS, host=LOCALHOST, port=port, called_aet='ORTHANC', tls=None,
                connect_timeout=3, acse_timeout=3, dimse_timeout=3)
    for dummy in range(10):
        assert service_procs.port_open(LOCALHOST, port)
    assert orthanc_connections(port) == []
    assert dicom.run_peer(peer)['outcome'] == 'success'

    held = [socket.create_connection((LOCALHOST, port), timeout=3) for dummy in range(6)]
    try:
        time.sleep(0.5)
        assert len(orthanc_connections(port)) == 6
        stalled = dicom.run_peer(peer)
        assert stalled['outcome'] == 'timeout', stalled
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert dicom.run_peer(peer)['outcome'] == 'success'
