"""ConAktiv admin tool stand-in (run from the server folder, or with --root).

  who                   the logged-on users, one a line
  message TEXT          a message on the server console and every client
  echo                  "OK ConAktiv <version> data <structure version>" from the running server
  data-version          the data file's structure version
  structure-update      the structural update of the user data to this release's structure version
  admin-email           the e-mail address of the user marked as administrator for server messages
  backup --dest DIR     the vendor's backup: Server Database (and the data file) as DIR/ConAktiv-<stamp>.tar.gz
  verify --from FILE    reads a backup back: every member, and the data file inside passes SQLite's integrity check
  restore --from FILE   puts a backup back (Server Database, and the data file when it lives elsewhere); the server
                        must be stopped (refused while it answers on its port)
"""
import argparse
import json
import os
import shutil
import socket
import sqlite3
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ca_common  # noqa: E402  pylint: disable=wrong-import-position


def structure_update(root):
    target = ca_common.version(root)
    with open(os.path.join(root, 'bin', 'structure.json'), encoding='utf-8') as handle:
        plan = json.load(handle)
    with ca_common.connect_data(root) as conn:
        current = conn.execute('SELECT version FROM structure').fetchone()[0]
        if current == target:
            print('Strukturupdate: die Daten haben bereits die Struktur %s' % target)
            return 0
        print('Strukturupdate %s -> %s' % (current, target))
        for statement in plan['statements']:
            conn.execute(statement)
        conn.commit()
        if plan.get('fails'):
            print('Strukturupdate abgebrochen: %s' % plan['fails'], file=sys.stderr)
            return 3
        conn.execute('UPDATE structure SET version = ?', (target,))
        conn.commit()
    print('Strukturupdate abgeschlossen: %s' % target)
    return 0


def backup(root, dest, label):
    os.makedirs(dest, exist_ok=True)
    name = 'ConAktiv-%s%s.tar.gz' % (time.strftime('%Y%m%dT%H%M%S'), ('-' + label) if label else '')
    path = os.path.join(dest, name)
    with tarfile.open(path + '.tmp', 'w:gz') as tar:
        tar.add(os.path.join(root, ca_common.DB_DIR), arcname=ca_common.DB_DIR)
        data = ca_common.data_file(root)
        if not data.startswith(os.path.join(root, ca_common.DB_DIR) + os.sep):
            tar.add(data, arcname=os.path.basename(data))
    os.replace(path + '.tmp', path)
    print(path)
    return 0


def _extract(archive, folder):
    """Extract the vendor's backup ``archive`` into ``folder`` (members that would leave it are refused)."""
    with tarfile.open(archive, 'r:gz') as tar:
        members = tar.getmembers()
        for member in members:
            name = os.path.normpath(member.name)
            if name.startswith('..') or os.path.isabs(name) or not (member.isfile() or member.isdir()):
                raise SystemExit('ConAktiv: %s holds %s, which is not a file or folder of the backup' % (archive, member.name))
        tar.extractall(folder, members=members)  # nosec - every member checked above


def _check_data(path):
    conn = sqlite3.connect('file:%s?mode=ro' % path, uri=True)
    try:
        answer = conn.execute('PRAGMA integrity_check').fetchone()[0]
        version = conn.execute('SELECT version FROM structure').fetchone()[0]
    finally:
        conn.close()
    if answer != 'ok':
        raise SystemExit('ConAktiv: the data file %s in the backup is damaged: %s' % (path, answer))
    return version


def verify(root, archive):
    scratch = tempfile.mkdtemp(prefix='.ca-verify-', dir=os.path.dirname(os.path.abspath(archive)))
    try:
        _extract(archive, scratch)
        inside = os.path.join(scratch, ca_common.DB_DIR, 'ConAktiv.4DD')
        if not os.path.isfile(inside):
            outside = os.path.join(scratch, os.path.basename(ca_common.data_file(root)))
            inside = outside if os.path.isfile(outside) else None
        if inside is None or not os.path.isdir(os.path.join(scratch, ca_common.DB_DIR, 'Preferences')):
            raise SystemExit('ConAktiv: %s holds no data file or no Preferences' % archive)
        print('Sicherung %s in Ordnung: Datenstruktur %s' % (os.path.basename(archive), _check_data(inside)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _server_answers(root):
    try:
        with socket.create_connection(('127.0.0.1', int(ca_common.prefs(root)['port'])), timeout=2):
            return True
    except (OSError, ValueError, KeyError):
        return False


def restore(root, archive):
    """Put ``archive`` back: a new Server Database beside the old one, then renamed into place."""
    if _server_answers(root):
        print('ConAktiv: the server is running; stop it before a restore', file=sys.stderr)
        return 2
    data = ca_common.data_file(root)
    db_dir = os.path.join(root, ca_common.DB_DIR)
    scratch = tempfile.mkdtemp(prefix='.ca-restore-', dir=root)
    try:
        _extract(archive, scratch)
        if not os.path.isdir(os.path.join(scratch, ca_common.DB_DIR)):
            raise SystemExit('ConAktiv: %s holds no %s' % (archive, ca_common.DB_DIR))
        if not data.startswith(db_dir + os.sep):
            outside = os.path.join(scratch, os.path.basename(data))
            if not os.path.isfile(outside):
                raise SystemExit('ConAktiv: %s holds no %s' % (archive, os.path.basename(data)))
            tmp = '%s.restoring' % data
            shutil.copy2(outside, tmp)
            os.replace(tmp, data)
        previous = db_dir + '.before-restore'
        shutil.rmtree(previous, ignore_errors=True)
        if os.path.isdir(db_dir):
            os.rename(db_dir, previous)
        os.rename(os.path.join(scratch, ca_common.DB_DIR), db_dir)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print('Sicherung %s wiederhergestellt' % os.path.basename(archive))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=ca_common.ROOT)
    parser.add_argument('command', choices=['who', 'message', 'echo', 'data-version', 'structure-update', 'admin-email',
                                            'backup', 'verify', 'restore'])
    parser.add_argument('text', nargs='?', default='')
    parser.add_argument('--dest')
    parser.add_argument('--label', default='')
    parser.add_argument('--from', dest='source')
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if args.command == 'who':
        for user in ca_common.admin('WHO', root):
            print(user)
    elif args.command == 'message':
        answer = ca_common.admin('MESSAGE %s' % args.text.replace('\n', ' '), root)
        print(answer[0] if answer else 'no answer')
    elif args.command == 'echo':
        print('\n'.join(ca_common.admin('ECHO', root)))
    elif args.command == 'data-version':
        print(ca_common.structure_version(root))
    elif args.command == 'structure-update':
        return structure_update(root)
    elif args.command == 'admin-email':
        with ca_common.connect_data(root) as conn:
            rows = conn.execute('SELECT email FROM users WHERE admin_server_messages = 1').fetchall()
        for (address,) in rows:
            print(address)
    elif args.command == 'backup':
        if not args.dest:
            parser.error('backup needs --dest')
        return backup(root, args.dest, args.label)
    elif args.command in ('verify', 'restore'):
        if not args.source or not os.path.isfile(args.source):
            parser.error('%s needs --from FILE (a backup the backup command wrote)' % args.command)
        return (verify if args.command == 'verify' else restore)(root, os.path.abspath(args.source))
    return 0


if __name__ == '__main__':
    sys.exit(main())
