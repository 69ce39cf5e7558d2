# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options and DB-API connections shared by db_backup and schema_update.

The drivers are optional imports: a module reports a missing one with ``missing_required_lib()``
through :func:`require_driver`, never with a traceback at import time.
"""

from __future__ import annotations

import os
import sqlite3
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import psycopg
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()

try:
    import pymysql
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError:
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()

try:
    from firebird.driver import connect as fb_connect
    from firebird.driver import driver_config as fb_driver_config
    HAS_FIREBIRD = True
    FIREBIRD_IMPORT_ERROR = None
except ImportError:
    HAS_FIREBIRD = False
    FIREBIRD_IMPORT_ERROR = traceback.format_exc()

ENGINES = ('postgresql', 'mysql', 'sqlite', 'firebird', 'files', 'mssql')
DEFAULT_PORTS = {'postgresql': 5432, 'mysql': 3306, 'firebird': 3050, 'mssql': 1433}
SERVER_ENGINES = ('postgresql', 'mysql', 'mssql')
PATH_ENGINES = ('sqlite', 'firebird', 'files')


class DatabaseError(Exception):
    """A connection or statement failed; the message names the cause in words."""


def database_argument_spec():
    """The argument spec that matches the ``clinops.upgrade.database`` doc fragment."""
    return dict(
        engine=dict(type='str', required=True, choices=list(ENGINES)),
        database=dict(type='str'),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_unix_socket=dict(type='str'),
        login_instance=dict(type='str'),
        path=dict(type='path'),
        connect_timeout=dict(type='int', default=10),
    )


def check_connection_params(params, supported):
    """Return a message for connection parameters that cannot work, or None.  Touches nothing."""
    engine = params['engine']
    if engine not in supported:
        return 'engine %s is not supported by this module (supported: %s)' % (engine, ', '.join(supported))
    if engine in ('postgresql', 'mysql', 'mssql') and not params.get('database'):
        return 'engine %s needs database' % engine
    if engine in ('sqlite', 'files') and not params.get('path'):
        return 'engine %s needs path' % engine
    if engine == 'firebird' and not (params.get('path') or params.get('database')):
        return 'engine firebird needs path (or database, the server-side path or alias)'
    port = params.get('login_port')
    if port is not None and not 0 < port < 65536:
        return 'login_port %s is out of range 1-65535' % port
    if params.get('connect_timeout') is not None and params['connect_timeout'] <= 0:
        return 'connect_timeout must be positive'
    return None


def require_driver(module, engine):
    """Fail the module cleanly when the Python driver for ``engine`` is missing."""
    missing = {
        'postgresql': (HAS_PSYCOPG, 'psycopg', PSYCOPG_IMPORT_ERROR),
        'mysql': (HAS_PYMYSQL, 'PyMySQL', PYMYSQL_IMPORT_ERROR),
        'firebird': (HAS_FIREBIRD, 'firebird-driver', FIREBIRD_IMPORT_ERROR),
    }.get(engine)
    if missing and not missing[0]:
        module.fail_json(msg=missing_required_lib(missing[1]), exception=missing[2])


def firebird_dsn(params):
    """The Firebird DSN: ``host/port:path`` for a server, the plain path for embedded access."""
    target = params.get('database') or params.get('path')
    if params.get('login_host'):
        return '%s/%s:%s' % (params['login_host'], params.get('login_port') or DEFAULT_PORTS['firebird'], target)
    return target


def connect(params, autocommit=False):
    """Open a DB-API connection for ``params`` (a module's params); raise DatabaseError in words."""
    engine = params['engine']
    timeout = params.get('connect_timeout') or 10
    try:
        if engine == 'postgresql':
            kwargs = dict(dbname=params['database'], connect_timeout=timeout, autocommit=autocommit)
            host = params.get('login_host') or params.get('login_unix_socket')
            if host:
                kwargs['host'] = host
            if params.get('login_port'):
                kwargs['port'] = params['login_port']
            if params.get('login_user'):
                kwargs['user'] = params['login_user']
            if params.get('login_password') is not None:
                kwargs['password'] = params['login_password']
            return psycopg.connect(**kwargs)
        if engine == 'mysql':
            kwargs = dict(database=params['database'], connect_timeout=timeout, autocommit=autocommit,
                          charset='utf8mb4')
            if params.get('login_unix_socket') and not params.get('login_host'):
                kwargs['unix_socket'] = params['login_unix_socket']
            else:
                kwargs['host'] = params.get('login_host') or 'localhost'
                kwargs['port'] = params.get('login_port') or DEFAULT_PORTS['mysql']
            kwargs['user'] = params.get('login_user') or 'root'
            if params.get('login_password') is not None:
                kwargs['password'] = params['login_password']
            return pymysql.connect(**kwargs)
        if engine == 'sqlite':
            path = params['path']
            if not os.path.exists(path):
                raise DatabaseError('SQLite database %s does not exist' % path)
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None if autocommit else 'DEFERRED')
            return conn
        if engine == 'firebird':
            kwargs = {}
            if params.get('login_user'):
                kwargs['user'] = params['login_user']
            if params.get('login_password') is not None:
                kwargs['password'] = params['login_password']
            fb_driver_config.db_defaults.timeout.value = timeout
            return fb_connect(firebird_dsn(params), **kwargs)
    except DatabaseError:
        raise
    except Exception as exc:  # drivers raise their own hierarchies; the message is what matters
        raise DatabaseError('cannot connect to %s database %s: %s' % (
            engine, params.get('database') or params.get('path'), describe_error(exc))) from exc
    raise DatabaseError('engine %s has no Python connection' % engine)


def describe_error(exc):
    """One line of text for a driver exception, without the password that may sit in its args."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:500]


def server_version(conn, engine):
    """The server's version string as the server reports it."""
    query = {
        'postgresql': 'SHOW server_version',
        'mysql': 'SELECT VERSION()',
        'sqlite': 'SELECT sqlite_version()',
        'firebird': "SELECT rdb$get_context('SYSTEM', 'ENGINE_VERSION') FROM rdb$database",
    }[engine]
    cur = conn.cursor()
    try:
        cur.execute(query)
        return str(cur.fetchone()[0])
    finally:
        cur.close()


# --- table inventory (added for db_backup; generic, usable by any module) ---------------------

def quote_identifier(engine, name):
    """Quote one identifier for ``engine`` (backticks for MySQL, double quotes elsewhere)."""
    if engine == 'mysql':
        return '`%s`' % name.replace('`', '``')
    if engine == 'mssql':
        return '[%s]' % name.replace(']', ']]')
    return '"%s"' % name.replace('"', '""')


def list_tables(conn, engine):
    """The user tables of the connected database, sorted, as ``schema.table`` (PostgreSQL) or ``table``."""
    query = {
        'postgresql': ("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                       " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
                       " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                       " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"),
        'mysql': ("SELECT table_name FROM information_schema.tables"
                  " WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"),
        'sqlite': "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        'firebird': ("SELECT TRIM(rdb$relation_name) FROM rdb$relations"
                     " WHERE COALESCE(rdb$system_flag, 0) = 0 AND rdb$view_blr IS NULL AND rdb$relation_type IN (0, 1)"),
    }[engine]
    cur = conn.cursor()
    try:
        cur.execute(query)
        return sorted(str(row[0]) for row in cur.fetchall())
    finally:
        cur.close()


def table_row_counts(conn, engine, tables=None):
    """Exact ``SELECT count(*)`` of each table (default: :func:`list_tables`) as ``{table: rows}``."""
    if tables is None:
        tables = list_tables(conn, engine)
    counts = {}
    cur = conn.cursor()
    try:
        for table in tables:
            parts = table.split('.', 1) if engine == 'postgresql' else [table]
            cur.execute('SELECT count(*) FROM %s' % '.'.join(quote_identifier(engine, p) for p in parts))
            counts[table] = int(cur.fetchone()[0])
    finally:
        cur.close()
    return counts


def database_size(conn, engine):
    """Bytes the connected database occupies on the server, as the server reports it (None if unknown)."""
    query = {
        'postgresql': 'SELECT pg_database_size(current_database())',
        'mysql': ('SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables'
                  ' WHERE table_schema = DATABASE()'),
        'sqlite': 'SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()',
        'firebird': 'SELECT mon$page_size * mon$pages FROM mon$database',
    }.get(engine)
    if query is None:
        return None
    cur = conn.cursor()
    try:
        cur.execute(query)
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None
    finally:
        cur.close()
