"""ConAktiv server stand-in: keeps the logged-on user sessions, shows server messages to them, answers admin commands.

Line protocol on 127.0.0.1:<Server.json port>:
  LOGIN <user>          a client session; the server sends "MSG <text>" lines to it; "LOGOUT" or EOF ends it
  ADMIN WHO             the logged-on users, one a line, then "."
  ADMIN MESSAGE <text>  the text on the server console (its log) and to every session; "OK <sessions>", "."
  ADMIN ECHO            "OK ConAktiv <version> data <structure version>", "."
On SIGTERM it tells every session "BYE" and ends.
"""
import argparse
import os
import signal
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ca_common  # noqa: E402  pylint: disable=wrong-import-position

SESSIONS = {}
LOCK = threading.Lock()


def console(text):
    print('%s [ConAktiv Server] %s' % (time.strftime('%H:%M:%S'), text), flush=True)


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write((text + '\n').encode('utf-8'))

    def handle(self):
        line = self.rfile.readline().decode('utf-8').rstrip('\r\n')
        verb, dummy, rest = line.partition(' ')
        if verb == 'LOGIN' and rest:
            self.session(rest)
        elif verb == 'ADMIN':
            self.admin(rest)
        else:
            self.send('ERR unknown command')

    def session(self, user):
        with LOCK:
            SESSIONS[self] = user
        console('user %s logged on' % user)
        self.send('OK welcome %s' % user)
        try:
            for raw in self.rfile:
                if raw.decode('utf-8').strip() == 'LOGOUT':
                    break
        except OSError:
            pass
        with LOCK:
            SESSIONS.pop(self, None)
        console('user %s logged off' % user)

    def admin(self, command):
        verb, dummy, rest = command.partition(' ')
        if verb == 'WHO':
            with LOCK:
                users = sorted(SESSIONS.values())
            for user in users:
                self.send(user)
        elif verb == 'MESSAGE':
            console('Servermeldung: %s' % rest)
            with LOCK:
                sessions = list(SESSIONS)
            for session in sessions:
                try:
                    session.send('MSG %s' % rest)
                except OSError:
                    pass
            self.send('OK %d' % len(sessions))
        elif verb == 'ECHO':
            self.send('OK ConAktiv %s data %s' % (ca_common.version(), ca_common.structure_version()))
        else:
            self.send('ERR unknown admin command %s' % verb)
        self.send('.')


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    port = int(ca_common.prefs()['port'])
    ca_common.structure_version()  # refuses to start without its data file
    server = Server(('127.0.0.1', port), Handler)

    def stop(_signum, _frame):
        console('server stops')
        with LOCK:
            sessions = list(SESSIONS)
        for session in sessions:
            try:
                session.send('BYE server stops')
            except OSError:
                pass
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    console('ConAktiv Server %s started on port %d (data structure %s)' % (ca_common.version(), port, ca_common.structure_version()))
    server.serve_forever()
    server.server_close()


if __name__ == '__main__':
    main()
