"""ImageServer web interface stand-in: an HTTP server on loopback.  GET / names the version, /login opens a session,
/logout?id= closes one, /sessions answers {"sessions": N} (the open sessions, what the upgrade reports before the stop)."""
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from is_common import say, settings, version

VERSION = version()
CFG = settings()
SESSIONS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def answer(self, code, body, kind='text/plain'):
        data = body.encode('utf-8')
        self.send_response(code)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        if url.path == '/':
            self.answer(200, 'ClearCanvas ImageServer %s\n' % VERSION)
        elif url.path == '/login':
            token = secrets.token_hex(8)
            with LOCK:
                SESSIONS[token] = True
            self.answer(200, json.dumps({'session': token}), 'application/json')
        elif url.path == '/logout':
            with LOCK:
                SESSIONS.pop((parse_qs(url.query).get('id') or [''])[0], None)
            self.answer(200, '{}', 'application/json')
        elif url.path == '/sessions':
            with LOCK:
                count = len(SESSIONS)
            self.answer(200, json.dumps({'sessions': count}), 'application/json')
        else:
            self.answer(404, 'not found\n')

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return


def main():
    server = ThreadingHTTPServer(('127.0.0.1', int(CFG['ports']['web'])), Handler)
    say('web', 'ImageServer web interface %s on http://127.0.0.1:%s/' % (VERSION, CFG['ports']['web']))
    server.serve_forever()


if __name__ == '__main__':
    main()
