# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``mysql`` (MySQL and MariaDB): ``mysqldump``/``mariadb-dump`` and the ``mysql`` client."""

from __future__ import annotations

import os

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, scratch_name
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import TailKeeper
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DEFAULT_PORTS, describe_error, quote_identifier


def mysql_option_value(value):
    """Quote a value for a MySQL/MariaDB option file (``[client]`` section)."""
    if '\n' in value or '\r' in value:
        raise BackupError('a line break cannot be written to a MySQL option file')
    escaped = value.replace('\\', '\\\\')
    if '"' not in value:
        return '"%s"' % escaped
    if "'" not in value:
        return "'%s'" % escaped
    if '#' not in value:
        return '"%s"' % escaped
    raise BackupError('login_password contains both quote characters and #, which a MySQL option file cannot hold')


def mysql_option_file(params):
    lines = ['[client]']
    if params.get('login_user'):
        lines.append('user=%s' % mysql_option_value(params['login_user']))
    if params.get('login_password') is not None:
        lines.append('password=%s' % mysql_option_value(params['login_password']))
    if params.get('login_unix_socket') and not params.get('login_host'):
        lines.append('socket=%s' % mysql_option_value(params['login_unix_socket']))
        lines.append('protocol=socket')
    else:
        lines.append('host=%s' % mysql_option_value(params.get('login_host') or 'localhost'))
        lines.append('port=%d' % (params.get('login_port') or DEFAULT_PORTS['mysql']))
        lines.append('protocol=tcp')
    # mariadb-dump/mysqldump have no connect-timeout option; only the command-line client reads it
    lines += ['[mysql]', 'connect-timeout=%d' % (params.get('connect_timeout') or 10)]
    return '\n'.join(lines) + '\n'


class MysqlEngine(Engine):
    engine = 'mysql'
    programs = (('dump', ['mariadb-dump', 'mysqldump'], 'dump MariaDB/MySQL'),
                ('client', ['mariadb', 'mysql'], 'load MariaDB/MySQL dumps'))
    error_patterns = (r'(?mi)^(mariadb-dump|mysqldump): (got error|error|couldn\'t)', r'(?m)^ERROR \d+')
    trailer = b'-- Dump completed'

    def option_file(self):
        files = self.secret_files()
        path = os.path.join(files.folder, 'my.cnf')
        if not os.path.exists(path):
            files.write('my.cnf', mysql_option_file(self.params))
        return '--defaults-extra-file=%s' % path

    def dump(self, tmp_path, count_rows=False):
        row_counts = self.row_counts() if count_rows else None
        cmd = [self.bins['dump'], self.option_file(), '--single-transaction', '--quick', '--routines', '--triggers',
               '--hex-blob', '--default-character-set=utf8mb4', '--no-tablespaces', self.params['database']]
        result = self.stream_to(tmp_path, [cmd], '%s of %s' % (os.path.basename(self.bins['dump']), self.params['database']))
        result['row_counts'] = row_counts
        return result

    def quick_check(self, path, manifest):
        keeper = TailKeeper(4096)
        handle, dec = self.open_backup_stream(path, manifest)
        with handle:
            if dec:
                self.run(dec, stdin=handle, sink=keeper, what='decompressing %s' % path)
            else:
                size = os.fstat(handle.fileno()).st_size
                handle.seek(max(0, size - 4096))
                keeper(handle.read())
        if self.trailer not in keeper.data[-1024:]:
            raise BackupError('dump %s does not end with the "-- Dump completed" line (incomplete dump)' % path)
        return 'the dump ends with "-- Dump completed"'

    def admin(self, statements):
        conn = self.connect()
        try:
            cur = conn.cursor()
            for stmt in statements:
                cur.execute(stmt)
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('%s failed: %s' % (statements[0][:60], describe_error(exc))) from exc
        finally:
            conn.close()

    def load(self, path, manifest, database):
        handle, dec = self.open_backup_stream(path, manifest)
        cmd = [self.bins['client'], self.option_file(), '--batch', '--binary-mode', '--default-character-set=utf8mb4', database]
        with handle:
            self.run(dec + [cmd], stdin=handle, what='loading the dump into %s' % database)

    def database_exists(self, name):
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute('SELECT 1 FROM information_schema.schemata WHERE schema_name = %s', (name,))
            return cur.fetchone() is not None
        finally:
            conn.close()

    def restore_scratch(self, path, manifest, target_hint):
        name = scratch_name(target_hint, 'restoring')
        self.admin(['CREATE DATABASE %s' % quote_identifier('mysql', name)])
        done = False
        try:
            self.load(path, manifest, name)
            done = True
        finally:
            if not done:
                self.drop_scratch(name)
        return name

    def drop_scratch(self, handle):
        try:
            self.admin(['DROP DATABASE IF EXISTS %s' % quote_identifier('mysql', handle)])
        except BackupError as exc:
            self.warnings.append('could not drop the scratch database %s: %s' % (handle, exc))

    def swap_in(self, handle, target, path, manifest):
        # MySQL cannot rename a database: the scratch load proved the dump loads; load it again into the target
        self.drop_scratch(handle)
        q = quote_identifier('mysql', target)
        self.admin(['DROP DATABASE IF EXISTS %s' % q, 'CREATE DATABASE %s' % q])
        self.load(path, manifest, target)
