"""What the stand-in KSAMU programs share: the server's ini file, the release's version, the database connection."""
import configparser
import datetime
import os
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALL = os.path.dirname(HERE)


def read_config(path):
    """config/server.ini: [server] port, data; [database] host, port, path, user, password."""
    parser = configparser.ConfigParser()
    with open(path, encoding='utf-8') as handle:
        parser.read_file(handle)
    return parser


def release_version(install=INSTALL):
    """The installed release's four blocks (version.txt at the installation's top)."""
    with open(os.path.join(install, 'version.txt'), encoding='ascii') as handle:
        return handle.readline().strip()


def scripts_version(version):
    """The database scripts' version: the first three blocks."""
    return '.'.join(version.split('.')[:3])


def connect(config):
    """A connection to the product's Firebird database, through the Firebird server on the loopback port."""
    from firebird.driver import connect as fb_connect  # pylint: disable=import-outside-toplevel
    db = config['database']
    return fb_connect('%s/%s:%s' % (db['host'], db['port'], db['path']), user=db['user'], password=db['password'])


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='milliseconds')


def ask(port, line, timeout=30.0):
    """One request to the server (a line), its answer (lines up to a line "."), as a list of lines."""
    with socket.create_connection(('127.0.0.1', int(port)), timeout=timeout) as sock:
        sock.sendall((line + '\n').encode('utf-8'))
        data = b''
        while not data.endswith(b'\n.\n'):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    lines = data.decode('utf-8').splitlines()
    return lines[:-1] if lines and lines[-1] == '.' else lines
