"""What the ImageServer stand-in's programs share: the installation, its settings, its database, its version."""
import datetime
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def settings(root=ROOT):
    """config/ImageServer.json of the installation (written by the installer from the site's settings)."""
    with open(os.path.join(root, 'config', 'ImageServer.json'), encoding='utf-8') as handle:
        return json.load(handle)


def version(root=ROOT):
    with open(os.path.join(root, 'Version.txt'), encoding='ascii') as handle:
        return handle.readline().strip()


def version_tuple(text):
    return tuple(int(p) for p in text.split('.'))


def connect(db, dbname=None):
    """A psycopg connection to the site's database (the lab's PostgreSQL stands in for SQL Server)."""
    import psycopg  # pylint: disable=import-outside-toplevel
    return psycopg.connect(host=db['host'], port=db['port'], user=db['user'], password=db['password'],
                           dbname=dbname or db['name'], autocommit=True, connect_timeout=5)


def say(component, text):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    print('%s %s %s' % (stamp, component, text), flush=True)
    sys.stdout.flush()
