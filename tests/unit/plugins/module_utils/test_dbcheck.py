"""Unit tests for module_utils dbcheck: the exact T-SQL and sqlcmd command lines (no SQL Server runs here), the
comparison that catches a dropped database or lost rows, and the real questions on SQLite."""
from __future__ import annotations

import sqlite3
import subprocess

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import dbcheck

MSSQL = dict(engine='mssql', database='ImageServer', login_host='sql01', login_port=1433, login_user='clinops',
             login_password='s3cret', connect_timeout=10)


def test_the_sql_server_identity_query_is_database_id_and_create_date():
    assert dbcheck.IDENTITY_QUERIES['mssql'] == (
        'SELECT database_id, CONVERT(varchar(33), create_date, 126) FROM sys.databases WHERE name = DB_NAME()')


def test_the_postgresql_identity_query_is_the_oid_and_the_creating_transaction():
    assert dbcheck.IDENTITY_QUERIES['postgresql'] == (
        'SELECT d.oid::bigint, d.xmin::text FROM pg_catalog.pg_database AS d WHERE d.datname = current_database()')


def test_the_sql_server_row_counts_come_from_sys_partitions():
    assert dbcheck.MSSQL_ROW_COUNTS == (
        "SELECT s.name + '.' + t.name, SUM(p.rows) FROM sys.tables AS t"
        " JOIN sys.schemas AS s ON s.schema_id = t.schema_id"
        " JOIN sys.partitions AS p ON p.object_id = t.object_id AND p.index_id IN (0, 1)"
        " WHERE t.is_ms_shipped = 0 GROUP BY s.name, t.name ORDER BY 1")


def test_sqlcmd_command_line_keeps_the_password_off_it():
    argv = dbcheck.sqlcmd_argv(MSSQL, "SELECT COUNT(*) FROM WorkQueue WHERE WorkQueueTypeEnum = 'ReconcileStudy'")
    assert argv == ['sqlcmd', '-S', 'tcp:sql01,1433', '-d', 'ImageServer', '-U', 'clinops', '-b', '-h', '-1', '-W', '-s', '\t',
                    '-l', '10', '-Q', "SET NOCOUNT ON; SELECT COUNT(*) FROM WorkQueue WHERE WorkQueueTypeEnum = 'ReconcileStudy'"]
    assert 's3cret' not in ' '.join(argv)
    windows_auth = dbcheck.sqlcmd_argv(dict(MSSQL, login_user=None, login_host=None, login_port=None), 'SELECT 1')
    assert windows_auth[:6] == ['sqlcmd', '-S', 'tcp:127.0.0.1,1433', '-d', 'ImageServer', '-E']


class FakeSqlcmd:
    """Stands in for sqlcmd: records the call, answers as sqlcmd -h -1 -W -s <tab> prints, refuses like it does."""

    def __init__(self, stdout='', rc=0):
        self.stdout, self.rc, self.calls = stdout, rc, []

    def __call__(self, argv, env):
        self.calls.append((argv, env))
        return subprocess.CompletedProcess(argv, self.rc, self.stdout, 'Msg 208, Level 16: Invalid object name' if self.rc else '')


def test_sql_server_questions_go_through_sqlcmd_with_the_password_in_its_environment():
    fake = FakeSqlcmd('5\n')
    assert dbcheck.count(MSSQL, 'SELECT COUNT(*) FROM StudyIntegrityQueue', run=fake) == 5
    argv, env = fake.calls[0]
    assert argv[-1] == 'SET NOCOUNT ON; SELECT COUNT(*) FROM StudyIntegrityQueue'
    assert env['SQLCMDPASSWORD'] == 's3cret'
    fake = FakeSqlcmd('7\t2026-11-29T21:14:03.217\n')
    assert dbcheck.identity(MSSQL, run=fake) == ['7', '2026-11-29T21:14:03.217']
    assert fake.calls[0][0][-1] == 'SET NOCOUNT ON; ' + dbcheck.IDENTITY_QUERIES['mssql']
    fake = FakeSqlcmd('dbo.Alert\t30\ndbo.Study\t1200\n')
    assert dbcheck.row_counts(MSSQL, run=fake) == {'dbo.Alert': 30, 'dbo.Study': 1200}
    assert fake.calls[0][0][-1] == 'SET NOCOUNT ON; ' + dbcheck.MSSQL_ROW_COUNTS


def test_a_sqlcmd_error_is_a_query_failure_in_words():
    with pytest.raises(dbcheck.QueryFailed, match='sqlcmd failed: .*Invalid object name'):
        dbcheck.count(MSSQL, 'SELECT COUNT(*) FROM Nope', run=FakeSqlcmd(rc=1))


def test_a_dropped_and_recreated_database_and_lost_rows_are_named():
    before = dict(identity=['7', '2019-03-01T10:00:00'], rows={'dbo.Study': 1200, 'dbo.Alert': 30, 'dbo.Device': 5})
    same = dict(identity=['7', '2019-03-01T10:00:00'], rows={'dbo.Study': 1200, 'dbo.Alert': 0, 'dbo.Device': 5, 'dbo.ServiceLock': 0})
    assert dbcheck.changes('mssql', 'ImageServer', before, same, ['Alert']) == []
    replaced = dict(identity=['9', '2026-11-29T22:00:00'], rows={'dbo.Study': 0, 'dbo.Alert': 0})
    assert dbcheck.changes('mssql', 'ImageServer', before, replaced, ['alert']) == [
        'the database ImageServer was replaced (dropped and created again): database_id 7 -> 9, '
        'create_date 2019-03-01T10:00:00 -> 2026-11-29T22:00:00',
        'table dbo.Device is gone (it had 5 rows)',
        'table dbo.Study lost rows: 1200 -> 0']
    # without the release notes' list, the purged alerts count too
    assert dbcheck.changes('mssql', 'ImageServer', before, same) == ['table dbo.Alert lost rows: 30 -> 0']


def test_questions_on_a_real_sqlite_database(tmp_path):
    path = str(tmp_path / 'q.db')
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE WorkQueue (k INTEGER, t TEXT); INSERT INTO WorkQueue VALUES (1, 'ReconcileStudy'), (2, 'StudyProcess');")
    conn.commit()
    conn.close()
    params = dict(engine='sqlite', path=path, connect_timeout=5)
    assert dbcheck.count(params, "SELECT COUNT(*) FROM WorkQueue WHERE t = 'ReconcileStudy'") == 1
    assert dbcheck.row_counts(params) == {'WorkQueue': 2}
    assert dbcheck.identity(params) == []
    with pytest.raises(dbcheck.QueryFailed, match='no such table'):
        dbcheck.count(params, 'SELECT COUNT(*) FROM StudyIntegrityQueue')
