"""PMOD control tool (stand-in): pmodctl.py echo-ts|echo-db|echo-ls|users --properties FILE [--host H]."""
import socket
import sys

from pmod_common import arg, read_properties


def ask(port, command, host='127.0.0.1'):
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall((command + '\n').encode())
        return sock.makefile().readline().strip()


def main():
    what = sys.argv[1]
    props = read_properties(arg('--properties'))
    host = arg('--host', props.get('ts.host', '127.0.0.1'))  # a client's Config.properties names its server
    try:
        if what == 'echo-ts':
            answer = ask(props['ts.port'], 'ECHO', host)
        elif what == 'echo-db':
            answer = ask(props['ts.port'], 'ECHODB', host)
        elif what == 'echo-ls':
            answer = ask(props['ls.port'], 'LICENSE', host)
        elif what == 'users':
            answer = ask(props['ts.port'], 'USERS', host)
            print(answer)
            return 0
        else:
            print('usage: pmodctl.py echo-ts|echo-db|echo-ls|users --properties FILE')
            return 2
    except OSError as exc:
        print('ERR %s' % exc)
        return 1
    print(answer)
    return 0 if answer.startswith('OK') else 1


sys.exit(main())
