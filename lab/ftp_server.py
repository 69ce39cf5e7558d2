"""The lab's vendor FTP server: a **real** FTP server (pyftpdlib) on 127.0.0.1 serving a folder read-only.

    python lab/ftp_server.py --dir DIR --port PORT --user USER --password-file FILE

The password is read from a file (never on the command line, where the process table shows it). ``start()`` runs it
detached through lab/procs.py and waits for its port; ``stop()`` ends it by PID. It supports REST (resumed downloads)
and SIZE, as the vendor's server does.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    from pyftpdlib.authorizers import DummyAuthorizer  # pylint: disable=import-outside-toplevel
    from pyftpdlib.handlers import FTPHandler  # pylint: disable=import-outside-toplevel
    from pyftpdlib.servers import FTPServer  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', required=True)
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--user', required=True)
    parser.add_argument('--password-file', required=True)
    args = parser.parse_args(argv)
    with open(args.password_file, encoding='utf-8') as handle:
        password = handle.read().strip()
    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, password, args.dir, perm='elr')  # read-only: list, change folder, retrieve
    handler = FTPHandler
    handler.authorizer = authorizer
    handler.masquerade_address = None
    handler.banner = 'clinops lab vendor FTP server'
    server = FTPServer(('127.0.0.1', args.port), handler)
    server.serve_forever()


def start(folder, state_dir, user, password, python=None):
    """Start the server on a free 127.0.0.1 port serving ``folder``; returns dict(pid, port, url, log)."""
    sys.path.insert(0, HERE)
    import procs  # pylint: disable=import-outside-toplevel,import-error
    os.makedirs(state_dir, exist_ok=True)
    secret = os.path.join(state_dir, 'ftp-password')
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        handle.write(password)
    port = procs.free_port()
    log = os.path.join(state_dir, 'ftp.log')
    proc = procs.start([python or sys.executable, os.path.join(HERE, 'ftp_server.py'), '--dir', folder, '--port', str(port),
                        '--user', user, '--password-file', secret], log)
    procs.wait_port(port, timeout=30, proc=proc, log=log)
    return dict(pid=proc.pid, port=port, url='ftp://127.0.0.1:%d' % port, log=log)


def stop(pid):
    sys.path.insert(0, HERE)
    import procs  # pylint: disable=import-outside-toplevel,import-error
    procs.stop(pid, check=lambda p: procs.cmdline_has(p, 'ftp_server.py'))


if __name__ == '__main__':
    main()
