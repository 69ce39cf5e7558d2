"""The KSAMU application server stand-in: a TCP server on 127.0.0.1 with a thread manager running background tasks.

    ksamu_server.py --config config/server.ini

One request per connection, a line; the answer is lines ending with a line ".":
    VERSION                      OK KSAMU <release> scripts <database scripts' version>
    LOGIN <user> <client version>   a user logs on (a session row, a screen file)   LOGOUT <user>
    USERS                        the logged-on users, one "<user> <client version>" per line
    WORK <user>                  a user's work (a row in KS_WORK); ERR locked while the database is locked
    BROADCAST <text>             shown on the server's screen (its log) and on every logged-on user's screen
    LOCK | UNLOCK | LOCKED       the product's database lock (KS_STATE), read at every request
    TASKS [STOP|START]           the thread manager: each task "<name> running|idle|stopped"; STOP lets the running
                                 ones finish their current run and starts none until START (kept in data/threads.json)

The thread manager's tasks: "sync" (every second), "stats" (every 2 s) and "validation" (every 4 s, 3 s long, it
blocks the others while it runs, as some of KSAMU's tasks do). Each run is a row in KS_TASK_RUNS.
"""
import json
import os
import signal
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ksamu_common as common  # noqa: E402  pylint: disable=wrong-import-position,import-error

TASKS = (('sync', 1.0, 0.3, False), ('stats', 2.0, 0.2, False), ('validation', 4.0, 3.0, True))


class Server:
    def __init__(self, config_path):
        self.config = common.read_config(config_path)
        self.data = self.config['server']['data']
        self.screens = os.path.join(self.data, 'screens')
        os.makedirs(self.screens, exist_ok=True)
        self.threads_file = os.path.join(self.data, 'threads.json')
        self.lock = threading.Lock()
        self.blocking = threading.Lock()      # held by a blocking task; every task takes it for its run
        self.running = {}
        self.stopped = self.read_stopped()

    # -- the database ------------------------------------------------------------------------------------------
    def sql(self, statement, params=(), fetch=False):
        conn = common.connect(self.config)
        try:
            cur = conn.cursor()
            cur.execute(statement, params)
            rows = cur.fetchall() if fetch else None
            conn.commit()
            return rows
        finally:
            conn.close()

    def locked(self):
        rows = self.sql("SELECT VAL FROM KS_STATE WHERE NAME = 'locked'", fetch=True)
        return bool(rows and rows[0][0] == '1')

    def say(self, text):
        print('%s SCREEN %s' % (common.now(), text), flush=True)

    # -- the thread manager --------------------------------------------------------------------------------------
    def read_stopped(self):
        try:
            with open(self.threads_file, encoding='utf-8') as handle:
                return bool(json.load(handle).get('stopped'))
        except (OSError, ValueError):
            return False

    def set_stopped(self, stopped):
        self.stopped = stopped
        tmp = self.threads_file + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as handle:
            json.dump({'stopped': stopped, 'at': common.now()}, handle)
        os.replace(tmp, self.threads_file)
        print('%s thread manager %s' % (common.now(), 'stopped' if stopped else 'started'), flush=True)

    def task_loop(self, name, period, length, blocking):
        while True:
            time.sleep(period)
            if self.stopped:
                continue
            with self.blocking:          # a blocking task holds it for its whole run: the others wait
                if self.stopped:
                    continue
                with self.lock:
                    self.running[name] = True
                started = common.now()
                try:
                    end = time.monotonic() + length
                    while time.monotonic() < end:
                        time.sleep(0.05)
                    if not self.locked():
                        self.sql('INSERT INTO KS_TASK_RUNS (TASK, STARTED, ENDED) VALUES (?, ?, ?)', (name, started, common.now()))
                except Exception as exc:  # pylint: disable=broad-except
                    print('%s task %s failed: %s' % (common.now(), name, exc), flush=True)
                finally:
                    with self.lock:
                        self.running[name] = False

    def tasks(self):
        with self.lock:
            return ['%s %s' % (name, 'running' if self.running.get(name) else ('stopped' if self.stopped else 'idle'))
                    for name, _p, _l, _b in TASKS]

    # -- requests -------------------------------------------------------------------------------------------------
    def handle(self, line):
        words = line.split(' ', 1)
        cmd, rest = words[0].upper(), (words[1] if len(words) > 1 else '')
        if cmd == 'VERSION':
            rows = self.sql('SELECT SCRIPTS FROM KS_VERSION', fetch=True)
            return ['OK KSAMU %s scripts %s' % (common.release_version(self.config['server']['install']), rows[0][0])]
        if cmd == 'LOGIN':
            user, client = (rest.split() + ['', ''])[:2]
            self.sql('UPDATE OR INSERT INTO KS_SESSIONS (USERNAME, CLIENT_VERSION, LOGGED_IN) VALUES (?, ?, ?) MATCHING (USERNAME)',
                     (user, client, common.now()))
            open(os.path.join(self.screens, user + '.txt'), 'a', encoding='utf-8').close()
            return ['OK']
        if cmd == 'LOGOUT':
            self.sql('DELETE FROM KS_SESSIONS WHERE USERNAME = ?', (rest.strip(),))
            return ['OK']
        if cmd == 'USERS':
            return ['%s %s' % row for row in self.sql('SELECT USERNAME, CLIENT_VERSION FROM KS_SESSIONS ORDER BY USERNAME', fetch=True)]
        if cmd == 'WORK':
            if self.locked():
                return ['ERR locked: the database is locked for an update']
            self.sql('INSERT INTO KS_WORK (USERNAME, WORKED_AT) VALUES (?, ?)', (rest.strip(), common.now()))
            return ['OK']
        if cmd == 'BROADCAST':
            self.say(rest)
            users = [row[0] for row in self.sql('SELECT USERNAME FROM KS_SESSIONS', fetch=True)]
            for user in users:
                with open(os.path.join(self.screens, user + '.txt'), 'a', encoding='utf-8') as handle:
                    handle.write('%s\t%s\n' % (common.now(), rest))
            return ['OK %d' % len(users)]
        if cmd in ('LOCK', 'UNLOCK'):
            self.sql("UPDATE KS_STATE SET VAL = ?, CHANGED = ? WHERE NAME = 'locked'", ('1' if cmd == 'LOCK' else '0', common.now()))
            print('%s database %s' % (common.now(), 'locked' if cmd == 'LOCK' else 'unlocked'), flush=True)
            return ['OK']
        if cmd == 'LOCKED':
            return ['locked' if self.locked() else 'unlocked']
        if cmd == 'TASKS':
            if rest.strip().upper() in ('STOP', 'START'):
                self.set_stopped(rest.strip().upper() == 'STOP')
            return self.tasks()
        return ['ERR unknown request %r' % cmd]


def main():
    config_path = sys.argv[sys.argv.index('--config') + 1]
    server = Server(config_path)
    try:
        server.locked()              # loads the Firebird client library, which installs its own signal handlers
    except Exception as exc:  # pylint: disable=broad-except
        print('%s the database does not answer yet: %s' % (common.now(), exc), flush=True)
    # a stop (SIGTERM from supervisord) ends the server at once, whatever the client library set up
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for name, period, length, blocking in TASKS:
        threading.Thread(target=server.task_loop, args=(name, period, length, blocking), daemon=True).start()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline().decode('utf-8').strip()
            try:
                answer = server.handle(line)
            except Exception as exc:  # pylint: disable=broad-except
                answer = ['ERR %s: %s' % (type(exc).__name__, exc)]
            self.wfile.write(('\n'.join(answer + ['.']) + '\n').encode('utf-8'))

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(('127.0.0.1', int(server.config['server']['port'])), Handler) as tcp:
        print('%s KSAMU %s listening on %s' % (common.now(), common.release_version(server.config['server']['install']),
                                               server.config['server']['port']), flush=True)
        tcp.serve_forever()


if __name__ == '__main__':
    main()
