"""The KSAMU administrator's command (the "Technical work" tab of the real product), against the running server.

    ksamu_admin.py --port N tasks list|stop|start     the thread manager ("Остановка выполняемых задач")
    ksamu_admin.py --port N db lock|unlock|status     the product's database lock
    ksamu_admin.py --port N broadcast TEXT            a message on the server's and every logged-on user's screen
    ksamu_admin.py --port N user login|logout NAME [CLIENT_VERSION]      a stand-in user logs on or off
    ksamu_admin.py --port N users                     the logged-on users
    ksamu_admin.py --port N work NAME                 a stand-in user's work (fails while the database is locked)
    ksamu_admin.py --port N version                   the server's release and database scripts' version

Prints the server's answer; exits 1 when it starts with ERR, 2 when the server cannot be reached.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ksamu_common as common  # noqa: E402  pylint: disable=wrong-import-position,import-error

REQUESTS = {('tasks', 'list'): 'TASKS', ('tasks', 'stop'): 'TASKS STOP', ('tasks', 'start'): 'TASKS START',
            ('db', 'lock'): 'LOCK', ('db', 'unlock'): 'UNLOCK', ('db', 'status'): 'LOCKED'}


def request(args):
    if len(args) >= 2 and tuple(args[:2]) in REQUESTS:
        return REQUESTS[tuple(args[:2])]
    if args and args[0] == 'broadcast':
        return 'BROADCAST ' + ' '.join(args[1:]).replace('\n', ' ')
    if len(args) >= 3 and args[:2] == ['user', 'login']:
        return 'LOGIN %s %s' % (args[2], args[3] if len(args) > 3 else '')
    if len(args) >= 3 and args[:2] == ['user', 'logout']:
        return 'LOGOUT ' + args[2]
    if args == ['users']:
        return 'USERS'
    if len(args) == 2 and args[0] == 'work':
        return 'WORK ' + args[1]
    if args == ['version']:
        return 'VERSION'
    return None


def main(argv):
    if '--port' not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    index = argv.index('--port')
    port, args = argv[index + 1], argv[:index] + argv[index + 2:]
    line = request(args)
    if line is None:
        print('unknown command: %s\n%s' % (' '.join(args), __doc__), file=sys.stderr)
        return 2
    try:
        answer = common.ask(port, line)
    except OSError as exc:
        print('ERR cannot reach the KSAMU server on port %s: %s' % (port, exc))
        return 2
    print('\n'.join(answer))
    return 1 if answer and answer[0].startswith('ERR') else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
