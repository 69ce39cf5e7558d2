"""ConAktiv admin tool stand-in (run from the server folder, or with --root).

  who                   the logged-on users, one a line
  message TEXT          a message on the server console and every client
  echo                  "OK ConAktiv <version> data <structure version>" from the running server
  data-version          the data file's structure version
  structure-update      the structural update of the user data to this release's structure version
  admin-email           the e-mail address of the user marked as administrator for server messages
  backup --dest DIR     the vendor's backup: Server Database (and the data file) as DIR/ConAktiv-<stamp>.tar.gz
"""
import argparse
import json
import os
import sys
import tarfile
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=ca_common.ROOT)
    parser.add_argument('command', choices=['who', 'message', 'echo', 'data-version', 'structure-update', 'admin-email', 'backup'])
    parser.add_argument('text', nargs='?', default='')
    parser.add_argument('--dest')
    parser.add_argument('--label', default='')
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
    return 0


if __name__ == '__main__':
    sys.exit(main())
