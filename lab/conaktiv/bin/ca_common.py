"""What the ConAktiv stand-in's programs share: the server folder, its Preferences, the data file, the protocol.

Stand-in (lab only). The server folder holds version.txt, bin/, and "Server Database" with Preferences/Server.json
(the site's port, web server, cache and backup settings), cert.pem/key.pem, Resources/Hunspell and, unless
Server.json's "data_file" points elsewhere, the data file ConAktiv.4DD (a real SQLite file).
"""
import json
import os
import socket
import sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DB_DIR = 'Server Database'


def version(root=ROOT):
    with open(os.path.join(root, 'version.txt'), encoding='utf-8') as handle:
        return handle.readline().strip()


def prefs(root=ROOT):
    with open(os.path.join(root, DB_DIR, 'Preferences', 'Server.json'), encoding='utf-8') as handle:
        return json.load(handle)


def data_file(root=ROOT):
    path = prefs(root).get('data_file') or 'ConAktiv.4DD'
    return path if os.path.isabs(path) else os.path.join(root, DB_DIR, path)


def connect_data(root=ROOT):
    path = data_file(root)
    if not os.path.isfile(path):
        raise SystemExit('ConAktiv: the data file %s is missing' % path)
    return sqlite3.connect(path, timeout=10)


def structure_version(root=ROOT):
    with connect_data(root) as conn:
        return conn.execute('SELECT version FROM structure').fetchone()[0]


def admin(command, root=ROOT, timeout=10.0):
    """Send one admin command to the running server; return its answer lines (up to the "." line)."""
    port = int(prefs(root)['port'])
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as conn:
        conn.sendall(('ADMIN %s\n' % command).encode('utf-8'))
        reader = conn.makefile('r', encoding='utf-8')
        lines = []
        for line in reader:
            line = line.rstrip('\n')
            if line == '.':
                break
            lines.append(line)
        return lines
