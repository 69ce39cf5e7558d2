# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read-only questions to a product's database that the upgrade engine asks around a vendor's installer and before
the stop: a count (the queue queries), the schema version, the database's identity and every table's row count.

PostgreSQL, MySQL, SQLite and Firebird are asked through the drivers of module_utils ``database``.  SQL Server (no
Python driver in the collection) is asked through Microsoft's ``sqlcmd`` (the password in the environment variable
``SQLCMDPASSWORD``, never on the command line); no SQL Server runs where this collection is tested, so the T-SQL
and the sqlcmd command line are checked by unit tests against their exact text.
"""

from __future__ import annotations

import os
import subprocess

from ansible_collections.clinops.upgrade.plugins.module_utils import database as _database

# The database's identity: the same database (not one dropped and created again under the same name) keeps it.
IDENTITY_QUERIES = {
    # the catalog row of the database: its oid, and the transaction that created the row (a creation marker)
    'postgresql': 'SELECT d.oid::bigint, d.xmin::text FROM pg_catalog.pg_database AS d WHERE d.datname = current_database()',
    'mssql': 'SELECT database_id, CONVERT(varchar(33), create_date, 126) FROM sys.databases WHERE name = DB_NAME()',
    'mysql': ('SELECT s.schema_name, MIN(t.create_time) FROM information_schema.schemata AS s LEFT JOIN information_schema.tables AS t'
              ' ON t.table_schema = s.schema_name WHERE s.schema_name = DATABASE() GROUP BY s.schema_name'),
}
# Every user table's row count, in one statement (SQL Server: the row counts the storage engine keeps per partition).
MSSQL_ROW_COUNTS = ("SELECT s.name + '.' + t.name, SUM(p.rows) FROM sys.tables AS t"
                    ' JOIN sys.schemas AS s ON s.schema_id = t.schema_id'
                    ' JOIN sys.partitions AS p ON p.object_id = t.object_id AND p.index_id IN (0, 1)'
                    ' WHERE t.is_ms_shipped = 0 GROUP BY s.name, t.name ORDER BY 1')
IDENTITY_WORDS = {'postgresql': ('oid', 'creation transaction'), 'mssql': ('database_id', 'create_date'),
                  'mysql': ('schema', 'first table created')}


class QueryFailed(Exception):
    """A question to the database could not be answered; the message says why in words."""


def sqlcmd_argv(params, statement):
    """The sqlcmd command line that runs ``statement`` (tab-separated rows, no headers, errors as exit code 1)."""
    server = 'tcp:%s,%d' % (params.get('login_host') or '127.0.0.1', params.get('login_port') or _database.DEFAULT_PORTS['mssql'])
    argv = ['sqlcmd', '-S', server, '-d', params['database']]
    argv += ['-U', params['login_user']] if params.get('login_user') else ['-E']
    return argv + ['-b', '-h', '-1', '-W', '-s', '\t', '-l', str(params.get('connect_timeout') or 10), '-Q',
                   'SET NOCOUNT ON; ' + statement]


def sqlcmd_rows(output):
    """The rows sqlcmd printed (``-h -1 -W -s <tab>``) as lists of strings."""
    return [line.split('\t') for line in output.splitlines() if line.strip()]


def rows(params, statement, run=None):
    """All rows of ``statement`` on the database of ``params`` (the ``database`` options)."""
    if params['engine'] == 'mssql':
        env = dict(os.environ)
        if params.get('login_password') is not None:
            env['SQLCMDPASSWORD'] = params['login_password']
        runner = run or (lambda argv, env: subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False))
        try:
            proc = runner(sqlcmd_argv(params, statement), env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise QueryFailed('cannot run sqlcmd: %s' % exc) from exc
        if proc.returncode != 0:
            raise QueryFailed('sqlcmd failed: %s' % (proc.stdout + proc.stderr).strip()[-500:])
        return sqlcmd_rows(proc.stdout)
    try:
        conn = _database.connect(params, autocommit=True)
    except _database.DatabaseError as exc:
        raise QueryFailed(str(exc)) from exc
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return [list(r) for r in cur.fetchall()]
    except Exception as exc:  # pylint: disable=broad-except
        raise QueryFailed('%s: %s' % (statement[:200], _database.describe_error(exc))) from exc
    finally:
        conn.close()


def count(params, statement, run=None):
    """The number the first column of the first row holds (a COUNT(*) query); 0 when there is no row."""
    found = rows(params, statement, run)
    if not found or found[0][0] in (None, ''):
        return 0
    try:
        return int(found[0][0])
    except (TypeError, ValueError) as exc:
        raise QueryFailed('%s answered %r, not a number' % (statement[:200], found[0][0])) from exc


def scalar(params, statement, run=None):
    found = rows(params, statement, run)
    return None if not found or found[0][0] is None else str(found[0][0]).strip()


def identity(params, run=None):
    """The database's identity as a list of strings (empty when the engine has none: files, SQLite, Firebird)."""
    statement = IDENTITY_QUERIES.get(params['engine'])
    if statement is None:
        return []
    found = rows(params, statement, run)
    if not found:
        raise QueryFailed('the database %s is not there' % params.get('database'))
    return [str(v) for v in found[0]]


def row_counts(params, run=None):
    """{table: rows} of every user table."""
    if params['engine'] == 'mssql':
        return dict((r[0], int(r[1])) for r in rows(params, MSSQL_ROW_COUNTS, run))
    try:
        conn = _database.connect(params, autocommit=True)
    except _database.DatabaseError as exc:
        raise QueryFailed(str(exc)) from exc
    try:
        return _database.table_row_counts(conn, params['engine'])
    except Exception as exc:  # pylint: disable=broad-except
        raise QueryFailed('cannot count the rows: %s' % _database.describe_error(exc)) from exc
    finally:
        conn.close()


def short_name(table):
    """A table's name without its schema, lower case (how a profile names the tables that may lose rows)."""
    return table.split('.')[-1].strip('"[]`').lower()


def changes(engine, database, before, after, may_lose=()):
    """What an installer changed that it must not: the database replaced (identity), tables gone or with fewer rows
    (except those in ``may_lose``).  ``before``/``after``: dict(identity=[...], rows={table: n})."""
    found = []
    if before.get('identity') and before['identity'] != after.get('identity'):
        words = IDENTITY_WORDS.get(engine, ('id', 'marker'))
        pairs = ['%s %s -> %s' % (word, old, new) for word, old, new in
                 zip(words, before['identity'], after.get('identity') or ['none'] * len(before['identity'])) if old != new]
        found.append('the database %s was replaced (dropped and created again): %s' % (database, ', '.join(pairs)))
    allowed = set(short_name(t) for t in may_lose or ())
    after_rows = dict((short_name(t), n) for t, n in (after.get('rows') or {}).items())
    for table, old in sorted((before.get('rows') or {}).items()):
        new = after_rows.get(short_name(table))
        if short_name(table) in allowed:
            continue
        if new is None:
            found.append('table %s is gone (it had %d rows)' % (table, old))
        elif new < old:
            found.append('table %s lost rows: %d -> %d' % (table, old, new))
    return found
