"""The ImageServer installer (stand-in), behaving like the vendor's for an upgrade:

* it finds the prior version through the registry (--registry, the stand-in for the Windows registry) and REFUSES when
  none is installed: "leave the prior version on the system" (--fresh installs on a new machine, --repair reinstalls
  this version over whatever is there, keeping the database: what a rollback runs);
* it uninstalls the prior version; the 1.x uninstaller asks whether to remove the database: --keep-database yes answers
  NO (keep it); when the answer is missing (or no), it DROPS the database and creates an empty one, as the vendor warns;
* it upgrades the database schema from the version it finds to its own (sql/<version>.sql, statement by statement);
* it installs its files (payload/), the site's settings (config/ImageServer.json) and Version.txt;
* it writes its progress to --log line by line ("Progress NN%: ..."), errors as "ERROR ...", and exits non-zero.

installer.json next to it names its version and, for the fault tests, a step to fail at (fail_at: schema).
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'installer.json'), encoding='utf-8') as _handle:
    META = json.load(_handle)
VERSION = META['version']
PAUSE = float(META.get('pause', 0.25))
LOG = [None]


def log(level, text):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    line = '%s %s %s\n' % (stamp, level, text)
    sys.stdout.write(line)
    sys.stdout.flush()
    if LOG[0]:
        LOG[0].write(line)
        LOG[0].flush()
        os.fsync(LOG[0].fileno())
    time.sleep(PAUSE)


def progress(percent, text):
    log('INFO', 'Progress %d%%: %s' % (percent, text))


def fail(code, text):
    log('ERROR', text)
    log('INFO', 'Setup ended with errors (exit code %d)' % code)
    sys.exit(code)


def vtuple(text):
    return tuple(int(p) for p in text.split('.'))


def connect(db, dbname=None):
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=db['host'], port=db['port'], user=db['user'], password=db['password'],
                           dbname=dbname or db['name'], autocommit=True, connect_timeout=5)


def read_json(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as handle:
        json.dump(data, handle, indent=2)
    os.replace(path + '.tmp', path)


def statements(version):
    with open(os.path.join(HERE, 'sql', '%s.sql' % version), encoding='utf-8') as handle:
        text = '\n'.join(line for line in handle.read().splitlines() if not line.startswith('--'))
    return [s.strip() for s in text.split(';\n') if s.strip().rstrip(';')]


def drop_database(db):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    with connect(db, 'postgres') as conn:
        conn.execute(sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(db['name'])))
        conn.execute(sql.SQL('CREATE DATABASE {} OWNER {} TEMPLATE template0').format(sql.Identifier(db['name']),
                                                                                      sql.Identifier(db['user'])))


def upgrade_schema(db):
    with connect(db) as conn:
        has = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'databaseversion'").fetchone()[0]
        if not has:
            log('INFO', 'the database %s is empty: creating the 1.3.0 schema' % db['name'])
            for statement in statements('1.3.0'):
                conn.execute(statement)
        current = conn.execute('SELECT Version FROM DatabaseVersion').fetchone()[0]
        if vtuple(current) > vtuple(VERSION):
            fail(4, 'the database %s has schema %s, newer than this installer (%s)' % (db['name'], current, VERSION))
        if vtuple(current) == vtuple(VERSION):
            progress(60, 'the database schema is %s already' % current)
            return
        steps = statements(VERSION)
        for index, statement in enumerate(steps):
            progress(40 + 40 * index // len(steps), 'upgrading the database schema %s -> %s: %s' % (current, VERSION, statement[:60]))
            conn.execute(statement)
            if META.get('fail_at') == 'schema' and index == 1:
                fail(3, 'the schema upgrade failed: SQL error 1205 (deadlock victim) after step %d of %d' % (index + 1, len(steps)))
        progress(80, 'the database schema is %s' % VERSION)


def main():
    parser = argparse.ArgumentParser(description='ClearCanvas ImageServer %s setup (stand-in)' % VERSION)
    parser.add_argument('--install-dir', required=True)
    parser.add_argument('--registry', required=True)
    parser.add_argument('--log')
    parser.add_argument('--keep-database', choices=['yes', 'no'])
    parser.add_argument('--repair', action='store_true')
    parser.add_argument('--fresh', action='store_true')
    parser.add_argument('--settings', help='--fresh: the site settings (JSON)')
    args = parser.parse_args()
    if args.log:
        os.makedirs(os.path.dirname(os.path.abspath(args.log)), exist_ok=True)
        LOG[0] = open(args.log, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
    root = os.path.abspath(args.install_dir)
    log('INFO', 'ClearCanvas ImageServer %s setup, installation folder %s' % (VERSION, root))
    registry = read_json(args.registry) or {}
    installed = registry.get('version') if os.path.isfile(os.path.join(root, 'Version.txt')) else None
    if args.fresh:
        settings = read_json(args.settings)
    elif installed is None and not args.repair:
        fail(2, 'no prior version of ImageServer is installed in %s: the upgrade needs the prior version on the system '
                '(it finds it, uninstalls it and upgrades its database)' % root)
    else:
        settings = registry.get('settings')
    if not settings:
        fail(2, 'no site settings found (registry %s)' % args.registry)
    progress(5, 'found %s' % ('ImageServer %s' % installed if installed else 'no installed version (%s)' % ('repair' if args.repair else 'fresh')))
    db = settings['db']
    if installed:
        progress(10, 'uninstalling ImageServer %s' % installed)
        if not args.repair:
            log('INFO', 'Question: remove the ImageServer database %s? answer: %s' % (
                db['name'], {'yes': 'No (keep it)', 'no': 'Yes (remove it)', None: 'none given'}[args.keep_database]))
            if args.keep_database != 'yes':
                log('WARN', 'removing the database %s (no "keep the database" answer): it is created again empty' % db['name'])
                drop_database(db)
        shutil.rmtree(root)
        registry['version'] = None
        write_json(args.registry, registry)
        progress(30, 'ImageServer %s uninstalled' % installed)
    upgrade_schema(db)
    progress(85, 'installing the files of ImageServer %s' % VERSION)
    tmp = root + '.setup-tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, 'payload'), tmp)
    write_json(os.path.join(tmp, 'config', 'ImageServer.json'), settings)
    with open(os.path.join(tmp, 'Version.txt'), 'w', encoding='ascii') as handle:
        handle.write('%s\n' % VERSION)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.replace(tmp, root)
    write_json(args.registry, {'product': 'ClearCanvas ImageServer', 'version': VERSION, 'install_dir': root, 'settings': settings})
    progress(100, 'ImageServer %s is installed' % VERSION)
    return 0


if __name__ == '__main__':
    sys.exit(main())
