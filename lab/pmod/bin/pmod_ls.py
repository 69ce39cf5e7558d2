"""PMOD license server (stand-in): answers every line with its version and the site's seats."""
import socketserver

from pmod_common import arg, read_properties, release_version

VERSION = release_version()
props = read_properties(arg('--properties'))


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(('OK PMOD-LS %s seats=%s\n' % (VERSION, props.get('license.seats', '5'))).encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


print('PMOD license server %s on port %s' % (VERSION, props['ls.port']), flush=True)
Server(('127.0.0.1', int(props['ls.port'])), Handler).serve_forever()
