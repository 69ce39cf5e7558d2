# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``postgresql``: ``pg_dump`` (custom or directory format) and ``pg_restore``."""

from __future__ import annotations

import os
import re

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, scratch_name
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import TailKeeper, hash_tree
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DatabaseError, describe_error, quote_identifier, table_row_counts


def pgpass_line(password):
    """A ``.pgpass`` line matching any host, port, database and user, with ``\\`` and ``:`` escaped."""
    if '\n' in password or '\r' in password:
        raise BackupError('login_password contains a line break, which a password file cannot hold')
    return '*:*:*:*:%s\n' % password.replace('\\', '\\\\').replace(':', '\\:')


def pg_conninfo(dbname):
    """A libpq conninfo string naming only the database (a name holding ``=`` is not mistaken for one)."""
    return "dbname='%s'" % dbname.replace('\\', '\\\\').replace("'", "\\'")


class PostgresEngine(Engine):
    engine = 'postgresql'
    programs = (('pg_dump', ['pg_dump'], 'dump PostgreSQL'), ('pg_restore', ['pg_restore'], 'read and restore PostgreSQL dumps'))
    error_patterns = (r'(?m)^pg_dump: error:', r'(?m)^pg_restore: error:', r'(?m)^pg_dump: \[', r'errors ignored on restore')

    def env(self):
        env = super().env()
        env['PGCONNECT_TIMEOUT'] = str(self.params.get('connect_timeout') or 10)
        env['PGAPPNAME'] = 'clinops db_backup'
        if self.params.get('login_password') is not None:
            env.pop('PGPASSWORD', None)
            env['PGPASSFILE'] = self.passfile()
        return env

    def passfile(self):
        files = self.secret_files()
        path = os.path.join(files.folder, 'pgpass')
        if not os.path.exists(path):
            files.write('pgpass', pgpass_line(self.params['login_password']))
        return path

    def conn_args(self):
        args = ['--no-password']
        host = self.params.get('login_host') or self.params.get('login_unix_socket')
        if host:
            args += ['--host', host]
        if self.params.get('login_port'):
            args += ['--port', str(self.params['login_port'])]
        if self.params.get('login_user'):
            args += ['--username', self.params['login_user']]
        return args

    def compress_args(self):
        if self.compression == 'none' or self.compressor:
            return ['--compress=0']
        if self.compression == 'zstd':  # directory format, pg_dump 16 and later
            return ['--compress=zstd']
        return []

    def pg_dump_major(self):
        rc, out, _err = self.module.run_command([self.bins['pg_dump'], '--version'])
        match = re.search(r'(\d+)(?:\.\d+)?', out or '')
        return int(match.group(1)) if rc == 0 and match else 0

    def resolve_programs(self):
        super().resolve_programs()
        if self.fmt == 'directory' and self.compression == 'zstd' and self.pg_dump_major() < 16:
            raise BackupError('directory format with zstd needs pg_dump 16 or later; %s is older (use gzip or none)'
                              % self.bins['pg_dump'])

    def dump(self, tmp_path, count_rows=False):
        snapshot_conn = None
        row_counts = None
        extra = []
        try:
            if count_rows:
                # count the rows in the very snapshot pg_dump dumps, so a busy database still compares equal
                snapshot_conn = self.connect()
                snapshot_conn.autocommit = False
                cur = snapshot_conn.cursor()
                cur.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY')
                cur.execute('SELECT pg_export_snapshot()')
                extra = ['--snapshot=%s' % cur.fetchone()[0]]
                row_counts = table_row_counts(snapshot_conn, 'postgresql')
            base = [self.bins['pg_dump']] + self.conn_args() + self.compress_args() + extra
            if self.fmt == 'custom':
                cmd = base + ['--format=custom', '--dbname', pg_conninfo(self.params['database'])]
                result = self.stream_to(tmp_path, [cmd], 'pg_dump of %s' % self.params['database'])
            else:
                cmd = base + ['--format=directory', '--jobs', str(self.params.get('jobs') or 1), '--file', tmp_path,
                              '--dbname', pg_conninfo(self.params['database'])]
                self.run([cmd], what='pg_dump of %s' % self.params['database'])
                files, digest, size = hash_tree(tmp_path)
                result = dict(size=size, sha256=digest, files=files, checksum_method='per-file, after pg_dump wrote them')
        except BackupError:
            raise
        except (DatabaseError, OSError):
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('cannot take a consistent snapshot of %s: %s' % (self.params['database'], describe_error(exc))) from exc
        finally:
            if snapshot_conn is not None:
                snapshot_conn.close()
        result['row_counts'] = row_counts
        return result

    def quick_check(self, path, manifest):
        lines = TailKeeper(1 << 20)
        if os.path.isdir(path):
            self.run([[self.bins['pg_restore'], '--list', path]], sink=lines, what='pg_restore --list')
        else:
            handle, dec = self.open_backup_stream(path, manifest)
            with handle:
                if dec:
                    self.run(dec + [[self.bins['pg_restore'], '--list']], stdin=handle, sink=lines, what='pg_restore --list')
                else:
                    self.run([[self.bins['pg_restore'], '--list', path]], sink=lines, what='pg_restore --list')
        entries = [line for line in lines.data.decode('utf-8', 'replace').splitlines() if line and not line.startswith(';')]
        if not entries:
            raise BackupError('pg_restore --list found no entries in %s' % path)
        return 'pg_restore --list read the table of contents (%d entries)' % len(entries)

    def maintenance_connect(self, avoid=()):
        errors = []
        for name in ('postgres', 'template1', self.params['database']):
            if name in avoid:
                continue
            try:
                return self.connect(name)
            except BackupError as exc:
                errors.append(str(exc))
        raise BackupError('cannot connect to a maintenance database: %s' % '; '.join(errors))

    def exec_maintenance(self, statements, avoid=()):
        conn = self.maintenance_connect(avoid)
        try:
            for stmt in statements:
                conn.execute(stmt)
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('%s failed: %s' % (' '.join(statements[0].split(' ', 3)[:3]), describe_error(exc))) from exc
        finally:
            conn.close()

    def database_exists(self, name):
        conn = self.maintenance_connect()
        try:
            return conn.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,)).fetchone() is not None
        finally:
            conn.close()

    def restore_scratch(self, path, manifest, target_hint):
        name = scratch_name(target_hint, 'restoring')
        ident = quote_identifier('postgresql', name)
        self.exec_maintenance(['CREATE DATABASE %s TEMPLATE template0' % ident])
        done = False
        try:
            cmd = [self.bins['pg_restore'], '--exit-on-error', '--no-password'] + self.conn_args()[1:] + [
                '--dbname', pg_conninfo(name)]
            if os.path.isdir(path):
                self.run([cmd + ['--jobs', str(self.params.get('jobs') or 1), path]], what='pg_restore into %s' % name)
            else:
                handle, dec = self.open_backup_stream(path, manifest)
                with handle:
                    self.run(dec + [cmd] if dec else [cmd + [path]], stdin=handle if dec else None,
                             what='pg_restore into %s' % name)
            done = True
        finally:
            if not done:
                self.drop_scratch(name)
        return name

    def drop_scratch(self, handle):
        try:
            self.exec_maintenance(['DROP DATABASE IF EXISTS %s WITH (FORCE)' % quote_identifier('postgresql', handle)],
                                  avoid=(handle,))
        except BackupError as exc:
            self.warnings.append('could not drop the scratch database %s: %s' % (handle, exc))

    def swap_in(self, handle, target, path, manifest):
        old = scratch_name(target, 'replaced')

        def q(name):
            return quote_identifier('postgresql', name)

        if self.database_exists(target):
            self.exec_maintenance(['ALTER DATABASE %s RENAME TO %s' % (q(target), q(old))], avoid=(target, handle))
            try:
                self.exec_maintenance(['ALTER DATABASE %s RENAME TO %s' % (q(handle), q(target))], avoid=(target, handle, old))
            except BackupError:
                self.exec_maintenance(['ALTER DATABASE %s RENAME TO %s' % (q(old), q(target))], avoid=(target, handle, old))
                raise
            self.exec_maintenance(['DROP DATABASE %s' % q(old)], avoid=(target, handle, old))
        else:
            self.exec_maintenance(['ALTER DATABASE %s RENAME TO %s' % (q(handle), q(target))], avoid=(target, handle))
