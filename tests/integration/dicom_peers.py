"""Real DICOM peers for the dicom_echo tests and benchmark, started on free loopback ports in a temp folder.

- dcmtk ``storescp`` (plain or TLS, with test certificates made here with ``cryptography``),
- Orthanc from Debian's package with its own JSON config (``DicomCheckCalledAet`` on),
- pynetdicom SCPs in a child process (this file run as a script) for the cases real servers do not
  produce on demand: abort, a failure status, no answer, no Verification context, a silent TCP listener.

Every peer is a child process, stopped by its PID.
"""
import argparse
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOCALHOST = '127.0.0.1'


def free_port():
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port, proc=None, timeout=30.0, log=None):
    """Block until ``port`` accepts TCP connections; fail early when ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('peer exited with %s before listening on %s: %s' % (proc.returncode, port, _tail(log)))
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('nothing listens on %s after %ss: %s' % (port, timeout, _tail(log)))


def _tail(log):
    if not log or not os.path.exists(log):
        return ''
    with open(log, encoding='utf-8', errors='replace') as handle:
        return handle.read()[-2000:]


class Peer:
    """A peer process: ``port``, ``aet``, ``pid``; ``stop()`` ends it by PID."""

    def __init__(self, name, cmd, port, aet, workdir, wait=True, **extra):
        self.name = name
        self.port = port
        self.aet = aet
        self.log = os.path.join(workdir, '%s-%s.log' % (name, port))
        self.cmd = cmd
        self.workdir = workdir
        self.extra = extra
        self.proc = None
        self.start(wait)

    def start(self, wait=True):
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30.0):
        wait_for_port(self.port, self.proc, timeout, self.log)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if not self.alive():
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __repr__(self):
        return '<%s %s@%s:%s pid=%s>' % (self.name, self.aet, LOCALHOST, self.port, self.proc and self.proc.pid)


def dcmtk(name):
    """Path of dcmtk's program ``name``.  Not a PATH lookup: pynetdicom installs apps of the same names."""
    path = os.path.join('/usr/bin', name)
    if not os.access(path, os.X_OK):
        raise RuntimeError('dcmtk %s is not installed (Debian package dcmtk)' % name)
    return path


def start_storescp(workdir, aet='STORESCP', port=None, tls=None, require_client_cert=True, wait=True):
    """dcmtk storescp on ``port``; ``tls`` is a :func:`make_pki` dict to serve DICOM over TLS."""
    storescp = dcmtk('storescp')
    port = port or free_port()
    out = os.path.join(workdir, 'storescp-%s' % port)
    os.makedirs(out, exist_ok=True)
    cmd = [storescp, '--aetitle', aet, '--output-directory', out, '--ignore']
    if tls:
        cmd += ['+tls', tls['server_key'], tls['server_cert'], '-pw', '+cf', tls['ca_cert']]
        cmd += ['--require-peer-cert' if require_client_cert else '--ignore-peer-cert']
    cmd.append(str(port))
    return Peer('storescp', cmd, port, aet, workdir, wait=wait)


def start_orthanc(workdir, aet='ORTHANC', check_called_aet=True):
    """Orthanc (Debian's /usr/sbin/Orthanc) with its own config, index and storage under ``workdir``."""
    binary = shutil.which('Orthanc') or '/usr/sbin/Orthanc'
    if not os.path.exists(binary):
        raise RuntimeError('Orthanc is not installed')
    port, http_port = free_port(), free_port()
    home = os.path.join(workdir, 'orthanc-%s' % port)
    os.makedirs(os.path.join(home, 'db'), exist_ok=True)
    config = {
        'Name': 'clinops-test-%s' % port,
        'StorageDirectory': os.path.join(home, 'db'),
        'IndexDirectory': os.path.join(home, 'db'),
        'HttpServerEnabled': True,
        'HttpPort': http_port,
        'RemoteAccessAllowed': False,
        'AuthenticationEnabled': False,
        'DicomServerEnabled': True,
        'DicomAet': aet,
        'DicomPort': port,
        'DicomCheckCalledAet': check_called_aet,
        'DicomAlwaysAllowEcho': True,
        'DicomCheckModalityHost': False,
        'Plugins': [],
        'ConcurrentJobs': 1,
    }
    path = os.path.join(home, 'orthanc.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(config, handle, indent=2)
    peer = Peer('orthanc', [binary, path], port, aet, workdir, http_port=http_port)
    return peer


def start_pynetdicom_scp(workdir, mode='ok', aet='PYSCP', port=None, wait=True, max_associations=10):
    """A pynetdicom SCP child (this file as a script); see :func:`serve` for the modes."""
    port = port or free_port()
    cmd = [sys.executable, os.path.abspath(__file__), mode, str(port), '--aet', aet,
           '--max-associations', str(max_associations)]
    return Peer('pynetdicom-%s' % mode, cmd, port, aet, workdir, wait=wait)


# ---------------------------------------------------------------------------------------------------------
# Test certificates
# ---------------------------------------------------------------------------------------------------------

def _write(path, data):
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return path


def make_pki(workdir):
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate, and an unrelated CA.

    Returns a dict of PEM file paths: ca_cert, server_cert, server_key, client_cert, client_key, other_ca_cert.
    """
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'clinops test'),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(private):
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

    def certificate(subject, public, issuer, issuer_key, ca=False, san=None, usage=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                            critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        else:
            builder = builder.add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                                            critical=True)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    pki = os.path.join(workdir, 'pki')
    os.makedirs(pki, exist_ok=True)
    paths = {}
    ca_key, other_key = key(), key()
    ca_name = name('clinops test CA')
    paths['ca_cert'] = _write(os.path.join(pki, 'ca.pem'),
                              certificate(ca_name, ca_key.public_key(), ca_name, ca_key, ca=True))
    other_name = name('some other CA')
    paths['other_ca_cert'] = _write(os.path.join(pki, 'other-ca.pem'),
                                    certificate(other_name, other_key.public_key(), other_name, other_key, ca=True))
    server_key = key()
    paths['server_key'] = _write(os.path.join(pki, 'server.key'), pem_key(server_key))
    paths['server_cert'] = _write(os.path.join(pki, 'server.pem'), certificate(
        name('localhost'), server_key.public_key(), ca_name, ca_key,
        san=[x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address(LOCALHOST))],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH]))
    client_key = key()
    paths['client_key'] = _write(os.path.join(pki, 'client.key'), pem_key(client_key))
    paths['client_cert'] = _write(os.path.join(pki, 'client.pem'), certificate(
        name('ECHOSCU'), client_key.public_key(), ca_name, ca_key, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]))
    return paths


# ---------------------------------------------------------------------------------------------------------
# The pynetdicom SCP child
# ---------------------------------------------------------------------------------------------------------

MODES = {
    'ok': 'answers C-ECHO with Success',
    'bad-status': 'answers C-ECHO with 0x0122 (SOP class not supported)',
    'abort': 'aborts the association when the C-ECHO arrives',
    'slow': 'never answers the C-ECHO (sleeps in the handler)',
    'no-context': 'supports CT Image Storage only, not Verification',
    'silent': 'a TCP listener that accepts and never says a word (no DICOM at all)',
}


def serve(mode, port, aet, max_associations):
    """Run one SCP in the foreground until killed."""
    if mode == 'silent':
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOCALHOST, port))
        listener.listen(64)
        held = []
        while True:
            conn = listener.accept()[0]
            held.append(conn)

    # pylint: disable=import-outside-toplevel
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, Verification

    def on_echo(event):
        if mode == 'bad-status':
            return 0x0122
        if mode == 'slow':
            time.sleep(3600)
        if mode == 'abort':
            event.assoc.abort()
        return 0x0000

    ae = AE(ae_title=aet)
    ae.maximum_associations = max_associations
    ae.require_called_aet = True
    if mode == 'no-context':
        ae.add_supported_context(CTImageStorage)
    else:
        ae.add_supported_context(Verification)
    ae.start_server((LOCALHOST, port), block=True, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])


def main(argv=None):
    parser = argparse.ArgumentParser(description='pynetdicom SCP for the dicom_echo tests')
    parser.add_argument('mode', choices=sorted(MODES))
    parser.add_argument('port', type=int)
    parser.add_argument('--aet', default='PYSCP')
    parser.add_argument('--max-associations', type=int, default=10)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # pylint: disable=protected-access
    serve(args.mode, args.port, args.aet, args.max_associations)


if __name__ == '__main__':
    main()
