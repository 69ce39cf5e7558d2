# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``mssql``: SQL Server through ``sqlcmd``; the server writes and reads the backup file itself.

Backup: ``BACKUP DATABASE [db] TO DISK = N'...' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT`` (a copy-only full backup:
the site's own backup chain is untouched), then ``RESTORE VERIFYONLY FROM DISK = N'...' WITH CHECKSUM``; db_backup
hashes the file SQL Server wrote (so it must run on the SQL Server host).  Restore (the rollback): the backup is
verified again, restored under a scratch name with its files moved (``WITH MOVE``), its rows counted, then the
target is restored over with ``REPLACE`` after ``SET SINGLE_USER WITH ROLLBACK IMMEDIATE`` (other sessions are
ended) and set back to ``MULTI_USER`` whether the restore succeeded or not.

Quoting, the ``sqlcmd`` command line and its environment (``SQLCMDPASSWORD``) live in ``module_utils/mssql.py``,
shared with schema_update and service_stop_ordered.
"""

from __future__ import annotations

import os

from ansible_collections.clinops.upgrade.plugins.module_utils import mssql as _mssql
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, first_line, safe_component, scratch_name
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import TailKeeper


def _name(database):
    try:
        return _mssql.quote_name(database, 'database')
    except _mssql.MssqlError as exc:
        raise BackupError(str(exc)) from None


def mssql_literal(value):
    try:
        return _mssql.literal(value, 'path')
    except _mssql.MssqlError as exc:
        raise BackupError(str(exc)) from None


def mssql_backup_statement(database, path, compression, label=None):
    """``BACKUP DATABASE`` for a copy-only full backup with page checksums (the backup chain is untouched)."""
    options = ['COPY_ONLY', 'CHECKSUM', 'FORMAT', 'INIT', 'COMPRESSION' if compression == 'gzip' else 'NO_COMPRESSION']
    if label:
        options.append('NAME = %s' % mssql_literal(label[:128]))
    return 'BACKUP DATABASE %s TO DISK = %s WITH %s' % (_name(database), mssql_literal(path), ', '.join(options))


def mssql_verify_statement(path):
    return 'RESTORE VERIFYONLY FROM DISK = %s WITH CHECKSUM' % mssql_literal(path)


def mssql_filelist_statement(path):
    return 'SET NOCOUNT ON; RESTORE FILELISTONLY FROM DISK = %s' % mssql_literal(path)


def mssql_restore_statement(database, path, moves=None):
    """``RESTORE DATABASE`` with checksums; ``moves`` maps logical file names to new physical paths."""
    options = ['CHECKSUM', 'REPLACE', 'RECOVERY']
    for logical, physical in sorted((moves or {}).items()):
        options.append('MOVE %s TO %s' % (mssql_literal(logical), mssql_literal(physical)))
    return 'RESTORE DATABASE %s FROM DISK = %s WITH %s' % (_name(database), mssql_literal(path), ', '.join(options))


def mssql_replace_statement(database, path):
    """The rollback: end other sessions (``SINGLE_USER``), restore over the database, and ``MULTI_USER`` again in any case."""
    ident, name = _name(database), mssql_literal(database)
    return ('IF DB_ID(%s) IS NOT NULL ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; '
            'BEGIN TRY %s; END TRY '
            'BEGIN CATCH IF DB_ID(%s) IS NOT NULL ALTER DATABASE %s SET MULTI_USER; THROW; END CATCH; '
            'ALTER DATABASE %s SET MULTI_USER' % (name, ident, mssql_restore_statement(database, path), name, ident, ident))


def mssql_moves(filelist, target):
    """New physical paths for a restore under ``target``: ``[(logical, physical)]`` from FILELISTONLY."""
    moves = {}
    for index, (logical, physical) in enumerate(filelist):
        sep = '\\' if '\\' in physical else '/'
        folder = physical.rsplit(sep, 1)[0] if sep in physical else ''
        ext = os.path.splitext(physical.replace('\\', '/'))[1] or '.mdf'
        name = '%s_%d%s' % (safe_component(target), index, ext)
        moves[logical] = folder + sep + name if folder else name
    return moves


def mssql_drop_statement(database):
    ident = _name(database)
    return "IF DB_ID(%s) IS NOT NULL BEGIN ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE %s; END" % (
        mssql_literal(database), ident, ident)


def mssql_row_count_query(database):
    return ("SET NOCOUNT ON; USE %s; SELECT s.name + '.' + t.name + '|' + CAST(SUM(p.rows) AS varchar(20)) FROM sys.tables t"
            " JOIN sys.schemas s ON s.schema_id = t.schema_id JOIN sys.partitions p ON p.object_id = t.object_id"
            " AND p.index_id IN (0, 1) WHERE t.is_ms_shipped = 0 GROUP BY s.name, t.name" % _name(database))


def mssql_size_query(database):
    return ('SET NOCOUNT ON; SELECT CAST(SUM(CAST(size AS bigint)) * 8192 AS varchar(30)) FROM sys.master_files'
            ' WHERE database_id = DB_ID(%s)' % mssql_literal(database))


class MssqlEngine(Engine):
    """SQL Server through ``sqlcmd`` (``module_utils/mssql.py`` builds its command line and environment)."""

    engine = 'mssql'
    programs = (('sqlcmd', ['sqlcmd'], 'run BACKUP DATABASE on SQL Server'),)
    error_patterns = (r'(?m)^Msg \d+, Level (1[1-9]|2\d)', r'(?m)^Sqlcmd: Error:')

    def env(self):
        return _mssql.env(self.params)  # SQLCMDPASSWORD for a SQL login: only this child sees it, never its argv

    def tool_versions(self):
        """sqlcmd has no ``--version`` (mssql-tools18): its ``-?`` help names the version."""
        _rc, out, err = (self.io.run if self.io.remote else self.module.run_command)([self.bins['sqlcmd'], '-?'])
        lines = [line.strip() for line in (out or err or '').splitlines() if line.strip().lower().startswith('version')]
        return {'sqlcmd': lines[0] if lines else first_line(out or err) or 'unknown'}

    def sqlcmd(self, statement):
        try:
            cmd = _mssql.argv(self.bins['sqlcmd'], self.params, statement)
        except _mssql.MssqlError as exc:
            raise BackupError(str(exc)) from None
        out = TailKeeper(1 << 24)
        words = statement.replace('SET NOCOUNT ON; ', '').split(' ', 2)[0:2]
        try:
            self.run([cmd], sink=out, what='sqlcmd (%s)' % ' '.join(words))
        except BackupError as exc:
            said = _mssql.error_in(out.data.decode('utf-8', 'replace'))  # sqlcmd prints SQL Server's errors on stdout
            raise BackupError('%s%s' % (exc, '; SQL Server said: %s' % said if said else '')) from None
        return [line.strip() for line in out.data.decode('utf-8', 'replace').splitlines() if line.strip()]

    def probe(self):
        version = first_line('\n'.join(self.sqlcmd('SET NOCOUNT ON; SELECT CAST(SERVERPROPERTY(\'ProductVersion\') AS varchar(40))')))
        rows = self.sqlcmd(mssql_size_query(self.params['database']))
        size = int(rows[0]) if rows and rows[0].isdigit() else None
        return version, size

    def row_counts(self, database=None):
        counts = {}
        for line in self.sqlcmd(mssql_row_count_query(database or self.params['database'])):
            name, _sep, rows = line.rpartition('|')
            if name and rows.isdigit():
                counts[name] = int(rows)
        return counts

    def dump(self, tmp_path, count_rows=False):
        row_counts = self.row_counts() if count_rows else None
        self.sqlcmd(mssql_backup_statement(self.params['database'], tmp_path, self.compression, self.params.get('label')))
        if not self.io.exists(tmp_path):
            raise BackupError('SQL Server wrote %s on its own host; db_backup must run on the SQL Server host' % tmp_path)
        digest, size = self.io.hash_file(tmp_path)
        return dict(size=size, sha256=digest, checksum_method='read once after SQL Server wrote the file', row_counts=row_counts)

    def quick_check(self, path, manifest):
        self.sqlcmd(mssql_verify_statement(path))
        return 'RESTORE VERIFYONLY ... WITH CHECKSUM succeeded (SQL Server read the whole backup and its page checksums)'

    def restore_scratch(self, path, manifest, target_hint):
        name = scratch_name(target_hint, 'restoring')
        filelist = []
        for line in self.sqlcmd(mssql_filelist_statement(path)):
            parts = line.split('|')
            if len(parts) > 2:
                filelist.append((parts[0], parts[1]))
        done = False
        try:
            self.sqlcmd(mssql_restore_statement(name, path, mssql_moves(filelist, name)))
            done = True
        finally:
            if not done:
                self.drop_scratch(name)
        return name

    def drop_scratch(self, handle):
        try:
            self.sqlcmd(mssql_drop_statement(handle))
        except BackupError as exc:
            self.warnings.append('could not drop the scratch database %s: %s' % (handle, exc))

    def swap_in(self, handle, target, path, manifest):
        self.drop_scratch(handle)
        self.sqlcmd(mssql_replace_statement(target, path))
