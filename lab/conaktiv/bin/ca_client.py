"""ConAktiv client stand-in: one user's session on the server; writes every message it is shown to its own log.

  ca_client.py --port PORT --user NAME --log FILE [--on-message logoff|stay] [--delay SECONDS]

With --on-message logoff the user logs off DELAY seconds after the first server message (as users do when told);
with stay the user keeps working until the server stops.
"""
import argparse
import socket
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--user', required=True)
    parser.add_argument('--log', required=True)
    parser.add_argument('--on-message', choices=['logoff', 'stay'], default='logoff')
    parser.add_argument('--delay', type=float, default=1.0)
    args = parser.parse_args()

    def shown(text):
        with open(args.log, 'a', encoding='utf-8') as handle:
            handle.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = socket.create_connection(('127.0.0.1', args.port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                shown('cannot reach the server')
                return 1
            time.sleep(0.5)
    conn.settimeout(None)
    conn.sendall(('LOGIN %s\n' % args.user).encode('utf-8'))
    reader = conn.makefile('r', encoding='utf-8')
    for line in reader:
        line = line.rstrip('\n')
        if line.startswith('OK welcome'):
            shown('logged on as %s' % args.user)
        elif line.startswith('MSG '):
            shown('Meldung: %s' % line[4:])
            if args.on_message == 'logoff':
                time.sleep(args.delay)
                conn.sendall(b'LOGOUT\n')
                shown('logged off after the message')
                break
        elif line.startswith('BYE'):
            shown('server stopped the session: %s' % line)
            break
    conn.close()
    shown('session ended')
    # a real client waits for its user; this one idles so that its supervisor does not restart it
    while True:
        time.sleep(3600)


if __name__ == '__main__':
    sys.exit(main())
