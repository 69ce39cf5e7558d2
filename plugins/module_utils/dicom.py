# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""DICOM verification (C-ECHO) for clinops.upgrade: input checks, outcome classification and the echo engine.

The pure helpers (validation, reason texts, statistics) need only the standard library; the echo engine
needs pynetdicom and is only used when ``HAS_PYNETDICOM`` is true.

pynetdicom's ``AE.associate()`` never raises: a failed TCP connect, a TLS failure, an ACSE timeout and a
peer that drops the connection all end as an aborted association, with the cause only in its log.  To say
*why* an echo failed, the engine records the socket exceptions itself (a recording socket and a recording
TLS socket class) and watches the PDUs sent and received through pynetdicom's public event hooks.
A received A-ASSOCIATE-RJ PDU decides the outcome on its own: on a rejection pynetdicom's DUL thread queues
it and closes the socket (PS3.8 action AE-4); when a fast peer (Orthanc) gets that far before
``AE.associate()`` has checked the socket, pynetdicom 3.0 finds it closed, aborts and never reads the queued
rejection, so the association says aborted although the peer rejected it.
The recording socket is plugged in by overriding ``AE._create_socket`` (pynetdicom 3.0), the one
place where pynetdicom builds a requestor's socket.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import ssl
import statistics
import time
import traceback

try:
    from pynetdicom import AE, evt
    from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
    from pynetdicom.sop_class import Verification
    from pynetdicom.transport import AssociationSocket
except ImportError:
    HAS_PYNETDICOM = False
    PYNETDICOM_IMPORT_ERROR = traceback.format_exc()
    AE = AssociationSocket = object
    A_ABORT_RQ = A_ASSOCIATE_RJ = evt = Verification = None
else:
    HAS_PYNETDICOM = True
    PYNETDICOM_IMPORT_ERROR = None


OUTCOMES = ('success', 'refused', 'timeout', 'rejected', 'aborted', 'no_accepted_context', 'bad_status', 'tls_error')

# Settings a peer entry may carry; those it leaves out come from the task's own options.
PEER_KEYS = ('host', 'port', 'called_aet', 'calling_aet', 'connect_timeout', 'acse_timeout', 'dimse_timeout',
             'max_pdu', 'tls')

DEFAULTS = {
    'port': 104,
    'called_aet': 'ANY-SCP',
    'calling_aet': 'ECHOSCU',
    'connect_timeout': 10.0,
    'acse_timeout': 30.0,
    'dimse_timeout': 30.0,
    'max_pdu': 16382,
}

TLS_VERSIONS = {'TLSv1.2': 'TLSv1_2', 'TLSv1.3': 'TLSv1_3'}

# At most this many peers are echoed at the same time (each association costs two pynetdicom threads).
MAX_WORKERS = 32

# PS3.8 Table 9-21: A-ASSOCIATE-RJ result, source and reason/diagnostic.
REJECT_RESULTS = {1: 'rejected-permanent', 2: 'rejected-transient'}
REJECT_SOURCES = {
    1: 'the called service-user',
    2: 'the service-provider (ACSE)',
    3: 'the service-provider (presentation)',
}
REJECT_DIAGNOSTICS = {
    1: {1: 'no reason given', 2: 'application context name not supported',
        3: 'calling AE title not recognised', 7: 'called AE title not recognised'},
    2: {1: 'no reason given', 2: 'protocol version not supported'},
    3: {1: 'temporary congestion', 2: 'local limit exceeded'},
}

# PS3.8 Table 9-26: A-ABORT source and reason.
ABORT_SOURCES = {0: 'the peer (service-user)', 1: 'reserved source', 2: 'the peer\'s service-provider'}
ABORT_REASONS = {
    0: 'reason not specified',
    1: 'unrecognised PDU',
    2: 'unexpected PDU',
    4: 'unrecognised PDU parameter',
    5: 'unexpected PDU parameter',
    6: 'invalid PDU parameter value',
}

# PS3.8 Table 9-18: presentation context results.
CONTEXT_RESULTS = {
    0: 'accepted',
    1: 'rejected by the user',
    2: 'rejected, no reason given',
    3: 'abstract syntax not supported',
    4: 'transfer syntaxes not supported',
}

# PS3.7 Annex C and 9.1.5: C-ECHO response statuses.
ECHO_STATUSES = {
    0x0000: 'Success',
    0x0122: 'Refused: SOP class not supported',
    0x0210: 'Refused: duplicate invocation',
    0x0211: 'Refused: unrecognised operation',
    0x0212: 'Refused: mistyped argument',
}


# ---------------------------------------------------------------------------------------------------------
# Input checks (no network)
# ---------------------------------------------------------------------------------------------------------

def ae_title_error(value, what):
    """Return why ``value`` is not a valid AE title (PS3.5 AE value representation), or None."""
    if value is None:
        return '%s must be set' % what
    if not isinstance(value, str):
        return '%s must be a string' % what
    stripped = value.strip(' ')
    if not stripped:
        return '%s must not be empty' % what
    if len(value) > 16:
        return '%s %r is %d characters long; an AE title has at most 16' % (what, value, len(value))
    if '\\' in value or any(ord(char) < 0x20 or ord(char) > 0x7e for char in value):
        return '%s %r may only hold printable ASCII characters without a backslash' % (what, value)
    return None


def peer_label(peer):
    """How messages name a peer: CALLED@host:port."""
    return '%s@%s:%s' % (peer.get('called_aet'), peer.get('host'), peer.get('port'))


def merge_peers(params):
    """Turn the module parameters into a list of complete peer settings.

    A peer entry inherits every setting it leaves out (None) from the task-level option of the same name.
    """
    base = dict((key, params.get(key)) for key in PEER_KEYS)
    for key, value in DEFAULTS.items():
        if base.get(key) is None:
            base[key] = value
    entries = params.get('peers') or [{'host': params.get('host')}]
    peers = []
    for entry in entries:
        peer = dict(base)
        for key in PEER_KEYS:
            if entry.get(key) is not None:
                peer[key] = entry[key]
        peers.append(peer)
    return peers


def check_tls(tls, where):
    """Return the problems with one ``tls`` dict (files that do not exist, a key without a certificate)."""
    errors = []
    if not tls:
        return errors
    for key in ('ca_file', 'cert_file', 'key_file'):
        path = tls.get(key)
        if path is None:
            continue
        if not isinstance(path, str) or not path:
            errors.append('%s: tls.%s must be a file path' % (where, key))
        elif not os.path.isfile(path):
            errors.append('%s: tls.%s %s does not exist or is not a file' % (where, key, path))
        elif not os.access(path, os.R_OK):
            errors.append('%s: tls.%s %s is not readable' % (where, key, path))
    if tls.get('key_file') and not tls.get('cert_file'):
        errors.append('%s: tls.key_file needs tls.cert_file' % where)
    version = tls.get('min_version')
    if version is not None and version not in TLS_VERSIONS:
        errors.append('%s: tls.min_version must be one of %s' % (where, ', '.join(sorted(TLS_VERSIONS))))
    return errors


def check_peer(peer):
    """Return every problem with one merged peer, as sentences naming the peer; empty when it is usable."""
    where = 'peer %s' % peer_label(peer)
    errors = []
    host = peer.get('host')
    if not isinstance(host, str) or not host.strip():
        errors.append('%s: host must not be empty' % where)
    port = peer.get('port')
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        errors.append('%s: port %r is out of range (1-65535)' % (where, port))
    for key in ('called_aet', 'calling_aet'):
        problem = ae_title_error(peer.get(key), key)
        if problem:
            errors.append('%s: %s' % (where, problem))
    for key in ('connect_timeout', 'acse_timeout', 'dimse_timeout'):
        value = peer.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            errors.append('%s: %s must be a number of seconds above 0, not %r' % (where, key, value))
    max_pdu = peer.get('max_pdu')
    if not isinstance(max_pdu, int) or isinstance(max_pdu, bool) or not (max_pdu == 0 or 4096 <= max_pdu <= 0xFFFFFFFF):
        errors.append('%s: max_pdu must be 0 (no limit) or 4096-4294967295, not %r' % (where, max_pdu))
    errors.extend(check_tls(peer.get('tls'), where))
    return errors


def check_run(wait, delay, repeat):
    """Return the problems with the wait/delay/repeat options."""
    errors = []
    if wait is None or wait < 0:
        errors.append('wait must be 0 or more seconds, not %r' % (wait,))
    if delay is None or delay <= 0:
        errors.append('delay must be above 0 seconds, not %r' % (delay,))
    if repeat is None or repeat < 1:
        errors.append('repeat must be 1 or more, not %r' % (repeat,))
    return errors


# ---------------------------------------------------------------------------------------------------------
# Words for codes
# ---------------------------------------------------------------------------------------------------------

def reject_reason(result, source, diagnostic):
    """A-ASSOCIATE-RJ in words, e.g. 'rejected-permanent by the called service-user: called AE title not recognised'."""
    result_text = REJECT_RESULTS.get(result, 'rejected (result 0x%02x)' % (result or 0))
    source_text = REJECT_SOURCES.get(source, 'an unknown source (0x%02x)' % (source or 0))
    diagnostic_text = REJECT_DIAGNOSTICS.get(source, {}).get(diagnostic, 'reserved diagnostic 0x%02x' % (diagnostic or 0))
    return '%s by %s: %s' % (result_text, source_text, diagnostic_text)


def abort_reason(source, reason):
    """A-ABORT in words."""
    text = 'association aborted by %s' % ABORT_SOURCES.get(source, 'an unknown source (0x%02x)' % (source or 0))
    if source == 2:
        text += ': %s' % ABORT_REASONS.get(reason, 'reserved reason 0x%02x' % (reason or 0))
    return text


def context_reason(results):
    """Why no presentation context was accepted: the results the peer gave for Verification."""
    if not results:
        return 'the peer accepted no presentation context for the Verification SOP class'
    texts = sorted(set(CONTEXT_RESULTS.get(code, 'result 0x%02x' % code) for code in results))
    return 'the peer accepted no presentation context for the Verification SOP class (%s)' % '; '.join(texts)


def status_category(code):
    """The PS3.7 category of a DIMSE status code."""
    if code == 0x0000:
        return 'Success'
    if code in (0xFF00, 0xFF01):
        return 'Pending'
    if code == 0xFE00:
        return 'Cancel'
    if code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
        return 'Warning'
    return 'Failure'


def status_reason(code):
    """A C-ECHO status in words, e.g. 'C-ECHO status 0x0122 (Refused: SOP class not supported)'."""
    text = ECHO_STATUSES.get(code) or status_category(code)
    return 'C-ECHO status 0x%04X (%s)' % (code, text)


def latency_stats(values):
    """min/median/max in milliseconds (three decimals) of the successful echoes; None values when there were none."""
    if not values:
        return {'min': None, 'median': None, 'max': None}
    return {
        'min': round(min(values), 3),
        'median': round(statistics.median(values), 3),
        'max': round(max(values), 3),
    }


def classify_socket_error(exc, tls, tcp_connected, connect_timeout):
    """(outcome, reason) for an exception raised while connecting or during the TLS handshake."""
    if isinstance(exc, ssl.SSLError):
        detail = str(exc)
        if getattr(exc, 'verify_message', None):
            detail = 'certificate verify failed: %s' % exc.verify_message
        return 'tls_error', 'TLS failure: %s' % detail
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if tls and tcp_connected:
            return 'timeout', 'TLS handshake did not complete within %ss' % connect_timeout
        return 'timeout', 'no TCP connection within %ss' % connect_timeout
    if isinstance(exc, socket.gaierror):
        return 'refused', 'cannot resolve the host name: %s' % (exc.strerror or exc)
    if isinstance(exc, ConnectionRefusedError):
        return 'refused', 'connection refused (nothing listens on that port)'
    if tls and tcp_connected:
        return 'tls_error', 'TLS failure: the peer closed the connection during the handshake (%s)' % (exc.strerror or exc)
    return 'refused', 'cannot connect: %s' % (exc.strerror or exc)


# ---------------------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------------------

class _Trace:
    """What happened during one echo attempt, filled in by the sockets and pynetdicom's event hooks."""

    def __init__(self):
        self.errors = []          # socket exceptions: (exception, tcp_connected)
        self.aborts_received = []  # (source, reason) of A-ABORT PDUs the peer sent
        self.aborts_sent = []      # (source, reason) of A-ABORT PDUs we sent
        self.rejects = []          # (result, source, diagnostic) of A-ASSOCIATE-RJ PDUs the peer sent

    def record(self, exc, tcp_connected):
        self.errors.append((exc, tcp_connected))

    def on_pdu_recv(self, event):
        pdu = event.pdu
        if isinstance(pdu, A_ABORT_RQ):
            self.aborts_received.append((pdu.source, pdu.reason_diagnostic))
        elif isinstance(pdu, A_ASSOCIATE_RJ):
            self.rejects.append((pdu.result, pdu.source, pdu.reason_diagnostic))

    def on_pdu_sent(self, event):
        pdu = event.pdu
        if isinstance(pdu, A_ABORT_RQ):
            self.aborts_sent.append((pdu.source, pdu.reason_diagnostic))


def _quick_ack(sock):
    """Ask Linux to acknowledge the next segment at once.

    Against dcmtk-based peers (storescp, Orthanc) every C-ECHO response was measured waiting ~40 ms, the
    Linux delayed-ACK time; acknowledging at once brings the C-ECHO round trip down to ~3 ms. Quick ACK
    mode does not stick, so it is set before each read. A no-op where TCP_QUICKACK does not exist.
    """
    if _TCP_QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass


_TCP_QUICKACK = getattr(socket, 'TCP_QUICKACK', None)


class _RecordingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that hands its exceptions to the attempt's trace before raising them."""

    def _remember(self, exc):
        trace = getattr(self.context, 'trace', None)
        if trace is not None:
            trace.record(exc, bool(getattr(self, '_connected', False)))

    def connect(self, addr):
        try:
            return super().connect(addr)
        except OSError as exc:
            self._remember(exc)
            raise

    def recv(self, buflen=1024, flags=0):
        _quick_ack(self)
        try:
            return super().recv(buflen, flags)
        except ssl.SSLError as exc:
            self._remember(exc)
            raise

    def send(self, data, flags=0):
        try:
            return super().send(data, flags)
        except ssl.SSLError as exc:
            self._remember(exc)
            raise


class _EchoSSLContext(ssl.SSLContext):
    """A client context whose sockets report their failures; ``trace`` is set before each attempt."""

    sslsocket_class = _RecordingSSLSocket
    trace = None


def build_ssl_context(tls):
    """An SSL client context from a ``tls`` dict; raises ssl.SSLError/OSError/ValueError on bad files."""
    context = _EchoSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = getattr(ssl.TLSVersion, TLS_VERSIONS[tls.get('min_version') or 'TLSv1.2'])
    verify = tls.get('verify', True) is not False
    if verify:
        if tls.get('ca_file'):
            context.load_verify_locations(cafile=tls['ca_file'])
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.get('cert_file'):
        context.load_cert_chain(certfile=tls['cert_file'], keyfile=tls.get('key_file') or None)
    return context


def tls_context_error(tls, where):
    """Load the TLS files once before any traffic; return the problem as a sentence, or None."""
    if not tls:
        return None
    try:
        build_ssl_context(tls)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return '%s: the TLS files cannot be used: %s' % (where, exc)
    return None


# ---------------------------------------------------------------------------------------------------------
# The echo engine (pynetdicom)
# ---------------------------------------------------------------------------------------------------------

class _RecordingSocket(socket.socket):
    """A TCP socket that hands a failed connect to the attempt's trace before raising it."""

    trace = None

    def connect(self, address):  # pylint: disable=signature-differs
        try:
            return super().connect(address)
        except OSError as exc:
            if self.trace is not None:
                self.trace.record(exc, False)
            raise

    def recv(self, bufsize, flags=0):  # pylint: disable=arguments-differ
        _quick_ack(self)
        return super().recv(bufsize, flags)


class _EchoSocket(AssociationSocket):
    """pynetdicom's association socket on top of a :class:`_RecordingSocket`."""

    def _create_socket(self, address):
        plain = super()._create_socket(address)
        timeout = plain.gettimeout()
        sock = _RecordingSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock.settimeout(timeout)
        # pynetdicom writes a PDU in pieces too; do not let Nagle hold them back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.trace = getattr(self.assoc.ae, 'trace', None)
        return sock


class _EchoAE(AE):
    """An AE whose associations use recording sockets; ``trace`` is set before each attempt."""

    trace = None

    def _create_socket(self, assoc, address, tls_args):
        sock = _EchoSocket(assoc, address=address)
        sock.tls_args = tls_args
        return sock


def quiet_pynetdicom():
    """Keep pynetdicom's log lines away from the module's output (stdout must hold only JSON)."""
    logger = logging.getLogger('pynetdicom')
    logger.setLevel(logging.CRITICAL + 10)
    logger.propagate = False


class PeerEcho:
    """Echoes one peer; one instance (and one pynetdicom AE) per peer, used from one thread."""

    def __init__(self, peer):
        self.peer = peer
        self.ae = _EchoAE(ae_title=peer['calling_aet'])
        self.ae.add_requested_context(Verification)
        self.ae.connection_timeout = float(peer['connect_timeout'])
        self.ae.acse_timeout = float(peer['acse_timeout'])
        self.ae.dimse_timeout = float(peer['dimse_timeout'])
        self.ae.network_timeout = max(float(peer['acse_timeout']), float(peer['dimse_timeout']))
        self.context = build_ssl_context(peer['tls']) if peer.get('tls') else None

    def tls_args(self):
        if self.context is None:
            return None
        return (self.context, self.peer['host'])

    def once(self):
        """One association + C-ECHO + release. Returns {outcome, status, reason, latency_ms}."""
        trace = _Trace()
        self.ae.trace = trace
        if self.context is not None:
            self.context.trace = trace
        handlers = [(evt.EVT_PDU_RECV, trace.on_pdu_recv), (evt.EVT_PDU_SENT, trace.on_pdu_sent)]
        peer = self.peer
        started = time.perf_counter()
        try:
            assoc = self.ae.associate(peer['host'], peer['port'], ae_title=peer['called_aet'], max_pdu=peer['max_pdu'],
                                      evt_handlers=handlers, tls_args=self.tls_args())
        except OSError as exc:  # socket.gaierror from the name lookup
            return self._failed(*self._classify(exc, False))
        if not assoc.is_established:
            return self._failed(*self._association_failure(assoc, trace, time.perf_counter() - started))
        try:
            return self._echo(assoc, trace, started)
        finally:
            if assoc.is_established:
                assoc.release()

    def _echo(self, assoc, trace, started):
        if not any(cx.abstract_syntax == Verification for cx in assoc.accepted_contexts):
            results = [cx.result for cx in assoc.rejected_contexts if cx.abstract_syntax == Verification]
            return self._failed('no_accepted_context', context_reason(results))
        echo_started = time.perf_counter()
        try:
            status = assoc.send_c_echo()
        except (RuntimeError, ValueError) as exc:
            return self._failed('aborted', 'the association ended before the C-ECHO could be sent (%s)' % exc)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        code = getattr(status, 'Status', None) if status is not None else None
        if code is None:
            return self._failed(*self._dimse_failure(trace, time.perf_counter() - echo_started))
        code = int(code)
        if code != 0x0000:
            return {'outcome': 'bad_status', 'status': code, 'reason': status_reason(code), 'latency_ms': None}
        return {'outcome': 'success', 'status': code, 'reason': None, 'latency_ms': elapsed_ms}

    @staticmethod
    def _failed(outcome, reason):
        return {'outcome': outcome, 'status': None, 'reason': reason, 'latency_ms': None}

    def _classify(self, exc, connected):
        outcome, reason = classify_socket_error(exc, self.context is not None, connected, self.peer['connect_timeout'])
        tls = self.peer.get('tls') or {}
        if (outcome == 'tls_error' and connected and not tls.get('cert_file')
                and not isinstance(exc, ssl.SSLCertVerificationError)):
            reason += '; does the peer require a client certificate (tls.cert_file)?'
        return outcome, reason

    def _association_failure(self, assoc, trace, elapsed):
        peer = self.peer
        if assoc.is_rejected:
            rsp = assoc.acceptor.primitive
            return 'rejected', reject_reason(getattr(rsp, 'result', None), getattr(rsp, 'result_source', None),
                                             getattr(rsp, 'diagnostic', None))
        if trace.rejects:
            # Rejected, but the connection was closed before pynetdicom looked at it, so it aborted instead of
            # reading the rejection (see the module docstring). The received PDU says what happened.
            return 'rejected', reject_reason(*trace.rejects[0])
        rsp = assoc.acceptor.primitive
        if rsp is not None and getattr(rsp, 'result', None) == 0x00:
            results = [cx.result for cx in assoc.rejected_contexts if cx.abstract_syntax == Verification]
            return 'no_accepted_context', context_reason(results)
        if trace.errors:
            return self._classify(*trace.errors[0])
        if trace.aborts_received:
            return 'aborted', abort_reason(*trace.aborts_received[0])
        if trace.aborts_sent and elapsed >= 0.9 * float(peer['acse_timeout']):
            return 'timeout', 'no answer to the association request within %ss (acse_timeout)' % peer['acse_timeout']
        if trace.aborts_sent:
            return 'aborted', 'the peer sent an invalid answer to the association request; aborted it'
        if self.context is None:
            return 'aborted', 'the peer closed the connection without answering the association request (does it expect TLS?)'
        return 'aborted', 'the peer closed the connection without answering the association request'

    def _dimse_failure(self, trace, elapsed):
        peer = self.peer
        if trace.errors:
            return self._classify(*trace.errors[0])
        if trace.aborts_received:
            return 'aborted', abort_reason(*trace.aborts_received[0])
        if trace.aborts_sent and elapsed >= 0.9 * float(peer['dimse_timeout']):
            return 'timeout', 'no C-ECHO response within %ss (dimse_timeout)' % peer['dimse_timeout']
        if trace.aborts_sent:
            return 'aborted', 'the peer sent an invalid C-ECHO response; aborted the association'
        return 'aborted', 'the peer closed the connection before the C-ECHO response'


def retryable(attempt):
    """Whether a failed attempt may be retried within ``wait``: every failure but a permanent rejection.

    A rejected-transient A-ASSOCIATE-RJ ("try again later": local limit exceeded, temporary congestion, or any other
    source or reason) is retried like a refused connection; a rejected-permanent one (an unknown AE title, say) is
    final at once, since asking again cannot change the answer.
    """
    return not (attempt['outcome'] == 'rejected' and (attempt['reason'] or '').startswith('rejected-permanent'))


def _note_retry(retried, attempt):
    """Add one retried attempt to ``retried`` ('outcome: reason'), counting repeats of the last one."""
    text = '%s: %s' % (attempt['outcome'], attempt['reason'])
    if retried and retried[-1]['what'] == text:
        retried[-1]['times'] += 1
    else:
        retried.append({'what': text, 'times': 1})


def run_peer(peer, wait=0.0, delay=1.0, repeat=1, echo=None, clock=time.monotonic, sleep=time.sleep):
    """Echo one peer ``repeat`` times, retrying failures (see :func:`retryable`) for up to ``wait`` seconds before the
    first success, every ``delay`` seconds.

    ``echo`` is a callable returning one attempt's dict (default: a :class:`PeerEcho`); the result holds
    host, port, called_aet, calling_aet, outcome, status, reason, latency_ms (statistics), attempts and retried
    (the failed attempts that were retried, as ``outcome: reason`` with the times in a row).
    """
    if echo is None:
        echo = PeerEcho(peer).once
    deadline = clock() + float(wait)
    latencies = []
    attempts = 0
    retried = []
    last = None
    while len(latencies) < repeat:
        attempts += 1
        last = echo()
        if last['outcome'] == 'success':
            latencies.append(last['latency_ms'])
            continue
        if latencies or not retryable(last) or clock() + float(delay) > deadline:
            break
        _note_retry(retried, last)
        sleep(float(delay))
    ok = len(latencies) >= repeat
    return {
        'host': peer['host'],
        'port': peer['port'],
        'called_aet': peer['called_aet'],
        'calling_aet': peer['calling_aet'],
        'tls': bool(peer.get('tls')),
        'outcome': 'success' if ok else last['outcome'],
        'status': last['status'],
        'reason': None if ok else last['reason'],
        'latency_ms': latency_stats(latencies),
        'attempts': attempts,
        'retried': ['%s (%d times)' % (r['what'], r['times']) if r['times'] > 1 else r['what'] for r in retried],
    }


def run_peers(peers, wait=0.0, delay=1.0, repeat=1, runner=run_peer, max_workers=MAX_WORKERS):
    """Echo every peer concurrently; results keep the order of ``peers``."""
    if len(peers) == 1:
        return [runner(peers[0], wait, delay, repeat)]
    workers = max(1, min(len(peers), max_workers))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(runner, peer, wait, delay, repeat) for peer in peers]
        return [future.result() for future in futures]


def failure_message(results):
    """'2 of 3 DICOM peers failed the C-ECHO: A@h:1 refused (...); ...'."""
    failed = [r for r in results if r['outcome'] != 'success']
    parts = ['%s %s (%s)' % (peer_label(r), r['outcome'], r['reason']) for r in failed]
    plural = '' if len(results) == 1 else 's'
    return '%d of %d DICOM peer%s failed the C-ECHO: %s' % (len(failed), len(results), plural, '; '.join(parts))
