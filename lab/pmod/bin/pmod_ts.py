"""PMOD transaction server (stand-in): ECHO, ECHODB (the database and its schema version), USERS, VERSION over TCP.

``REQUIRED_SCHEMA`` is filled in by lab/pmod/build.py from lab/pmod/releases.json (string.Template)."""
import os
import socketserver
import sqlite3

from pmod_common import arg, read_properties, release_version

VERSION = release_version()
REQUIRED_SCHEMA = '${required_schema}'
props = read_properties(arg('--properties'))
CLIENTS = {'n': 0}


def blocks(v):
    return tuple(int(x) for x in v.split('.'))


def echo_db():
    if props.get('db.engine', 'sqlite') == 'postgresql':
        return echo_postgresql()
    path = props['db.path']
    if not os.path.isabs(path):
        return 'ERR database path %s is not absolute' % path
    if not os.path.exists(path):
        return 'ERR database %s missing' % path
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute('SELECT version FROM pmod_schema').fetchone()[0]
        if blocks(schema) < blocks(REQUIRED_SCHEMA):
            return 'ERR schema %s older than required %s' % (schema, REQUIRED_SCHEMA)
        studies = conn.execute('SELECT count(*) FROM studies').fetchone()[0]
        return 'OK schema=%s studies=%d' % (schema, studies)
    except sqlite3.Error as exc:
        return 'ERR %s' % exc
    finally:
        conn.close()


def echo_postgresql():
    import psycopg  # pylint: disable=import-outside-toplevel
    try:
        with psycopg.connect(host=props['db.host'], port=int(props['db.port']), dbname=props['db.name'],
                             user=props['db.user'], password=props.get('db.password', ''), connect_timeout=5,
                             application_name='pmod-ts') as conn:
            schema = conn.execute('SELECT version FROM pmod_schema').fetchone()[0]
            if blocks(schema) < blocks(REQUIRED_SCHEMA):
                return 'ERR schema %s older than required %s' % (schema, REQUIRED_SCHEMA)
            studies = conn.execute('SELECT count(*) FROM studies').fetchone()[0]
            return 'OK schema=%s studies=%d' % (schema, studies)
    except (psycopg.Error, KeyError, ValueError) as exc:
        return 'ERR %s' % str(exc).strip().replace('\n', ' ')


def database_name():
    if props.get('db.engine', 'sqlite') == 'postgresql':
        return 'postgresql://%s@%s:%s/%s' % (props.get('db.user'), props.get('db.host'), props.get('db.port'), props.get('db.name'))
    return props['db.path']


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().decode().strip().upper()
        if line == 'ECHO':
            answer = 'OK PMOD-TS %s site=%s' % (VERSION, props.get('site.name', ''))
        elif line == 'ECHODB':
            answer = echo_db()
        elif line == 'USERS':
            answer = str(CLIENTS['n'])
        elif line == 'VERSION':
            answer = VERSION
        else:
            answer = 'ERR unknown command'
        self.wfile.write((answer + '\n').encode('utf-8'))


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


print('PMOD transaction server %s on port %s, database %s' % (VERSION, props['ts.port'], database_name()), flush=True)
Server(('127.0.0.1', int(props['ts.port'])), Handler).serve_forever()
