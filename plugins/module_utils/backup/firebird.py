# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``firebird``: ``gbak`` backups and restores of a database file."""

from __future__ import annotations

import os
import secrets

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import remove_path
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DatabaseError, connect, firebird_dsn


class FirebirdEngine(Engine):
    engine = 'firebird'
    programs = (('gbak', ['gbak'], 'back up and restore Firebird'),)
    error_patterns = (r'(?m)^gbak: ?ERROR',)

    def source_id(self):
        return self.params.get('path') or self.params.get('database')

    def restore_target_default(self):
        return self.source_id()

    def auth_args(self):
        args = []
        if self.params.get('login_user'):
            args += ['-user', self.params['login_user']]
        if self.params.get('login_password') is not None:
            files = self.secret_files()
            path = os.path.join(files.folder, 'fbpass')
            if not os.path.exists(path):
                if '\n' in self.params['login_password']:
                    raise BackupError('login_password contains a line break, which gbak cannot read from a file')
                files.write('fbpass', self.params['login_password'] + '\n')
            args += ['-fetch_password', path]
        return args

    def dsn(self, path):
        params = dict(self.params, database=None, path=path)
        return firebird_dsn(params)

    def connect(self, database=None):
        params = dict(self.params)
        if database is not None:
            params.update(database=None, path=database)
        try:
            return connect(params, autocommit=True)
        except DatabaseError as exc:
            raise BackupError(str(exc)) from exc

    def dump(self, tmp_path, count_rows=False):
        row_counts = self.row_counts() if count_rows else None
        cmd = [self.bins['gbak'], '-b', '-g'] + self.auth_args() + [self.dsn(self.source_id()), 'stdout']
        result = self.stream_to(tmp_path, [cmd], 'gbak backup of %s' % self.source_id())
        if result['size'] == 0:
            raise BackupError('gbak wrote nothing for %s' % self.source_id())
        result['row_counts'] = row_counts
        return result

    def scratch_path(self, target_hint, purpose):
        folder = os.path.dirname(target_hint)
        base = os.path.basename(target_hint)
        return os.path.join(folder, '.%s.%s.%s.fdb' % (base, purpose, secrets.token_hex(4)))

    def restore_scratch(self, path, manifest, target_hint, purpose='restoring'):
        scratch = self.scratch_path(target_hint, purpose)
        handle, dec = self.open_backup_stream(path, manifest)
        cmd = [self.bins['gbak'], '-c'] + self.auth_args()
        done = False
        try:
            with handle:
                if dec:
                    self.run(dec + [cmd + ['stdin', self.dsn(scratch)]], stdin=handle, what='gbak restore of %s' % path)
                else:
                    self.run([cmd + [path, self.dsn(scratch)]], what='gbak restore of %s' % path)
            done = True
        finally:
            if not done:
                self.drop_scratch(scratch)
        return scratch

    def quick_check(self, path, manifest):
        # gbak has no read-only verification: a restore into a scratch database is the engine's own check
        scratch = self.restore_scratch(path, manifest, self.source_id(), 'check')
        self.drop_scratch(scratch)
        return 'gbak restored the backup into a scratch database (dropped again)'

    def drop_scratch(self, handle):
        try:
            conn = self.connect(handle)
            conn.drop_database()
        except Exception:  # pylint: disable=broad-except
            if os.path.exists(handle):
                remove_path(handle)

    def attachments(self, target):
        conn = self.connect(target)
        try:
            cur = conn.cursor()
            cur.execute('SELECT count(*) FROM mon$attachments WHERE mon$attachment_id <> current_connection'
                        ' AND mon$system_flag = 0')
            return int(cur.fetchone()[0])
        finally:
            conn.close()

    def swap_in(self, handle, target, path, manifest):
        if os.path.exists(target):
            others = self.attachments(target)
            if others:
                raise BackupError('database %s has %d other attachments; stop its services before restoring' % (target, others))
        if not os.path.exists(handle):
            raise BackupError('the restored scratch database %s is not visible on this host; run the module on the'
                              ' database server' % handle)
        os.replace(handle, target)
