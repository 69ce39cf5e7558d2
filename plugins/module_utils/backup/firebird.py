# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``firebird``: ``gbak`` backups and restores of a database file.

Where the module runs (POSIX): gbak streams the backup to stdout, through a compressor when asked, hashed while it is
written; the row counts are read with the Python driver. On a Windows host (``io.remote``, the upgrade's action plugin
on the controller): ``gbak.exe`` from ``bin_dir`` runs there (the host's ``run``) and writes the backup file itself
(``gbak -b -g ... <database> <file>``, as Firebird's documentation gives it), which is then hashed on the host
(``io.hash_file``); ``quick`` restores it into a scratch database beside the database with ``gbak -c`` and removes
that again; a restore goes into a scratch database first, then takes the database's place by two renames (a
database file the Firebird server still holds open is named by the host's rename, and nothing is replaced). The
password reaches gbak.exe as on POSIX, in a file (``-fetch_password``): a private dot-file in ``dest`` on the host,
removed when the run ends.
"""

from __future__ import annotations

import os
import secrets

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, first_line
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import remove_path
from ansible_collections.clinops.upgrade.plugins.module_utils.database import DatabaseError, connect, firebird_dsn


class FirebirdEngine(Engine):
    engine = 'firebird'
    programs = (('gbak', ['gbak'], 'back up and restore Firebird'),)
    error_patterns = (r'(?m)^gbak: ?ERROR',)

    def source_id(self):
        return self.params.get('path') or self.params.get('database')

    def resolve_programs(self):
        if not self.io.remote:
            super().resolve_programs()
            return
        gbak = self.params['bin_dir'].rstrip('/\\') + '/gbak.exe'  # check_remote: bin_dir is set, no compressor
        if not self.io.exists(gbak):
            raise BackupError('gbak.exe (needed to back up and restore Firebird) is not in bin_dir %s on the host'
                              % self.params['bin_dir'])
        self.bins['gbak'] = gbak

    def tool_versions(self):
        if not self.io.remote:
            return super().tool_versions()
        rc, out, err = self.io.run([self.bins['gbak'], '-z'])
        return {'gbak.exe': first_line(out) or first_line(err) or 'unknown (exit %s)' % rc}

    def probe(self):
        if not self.io.remote:
            return super().probe()
        size = self.io.size(self.source_id()) if not self.params.get('database') else None
        if size is None and not self.params.get('database'):
            raise BackupError('database file %s does not exist on the host' % self.source_id())
        return None, size  # the server version would need a driver connection from the controller

    def row_counts(self, database=None):
        if self.io.remote:
            return None  # counted through a driver connection where the module runs; verify restore is refused remotely
        return super().row_counts(database)

    def restore_target_default(self):
        return self.source_id()

    def auth_args(self):
        args = []
        if self.params.get('login_user'):
            args += ['-user', self.params['login_user']]
        if self.params.get('login_password') is not None and self.io.remote:
            if '\n' in self.params['login_password']:
                raise BackupError('login_password contains a line break, which gbak cannot read from a file')
            if self.remote_secret is None:
                path = self.params['dest'].rstrip('/\\') + '/.db_backup-fbpass-%s' % secrets.token_hex(8)
                self.io.write_new(path, self.params['login_password'] + '\n')
                self.remote_secret = path
            args += ['-fetch_password', self.remote_secret]
        elif self.params.get('login_password') is not None:
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

    remote_secret = None

    def cleanup(self):
        if self.remote_secret is not None:
            try:
                self.io.remove(self.remote_secret)
            finally:
                self.remote_secret = None
        super().cleanup()

    def dump(self, tmp_path, count_rows=False):
        if self.io.remote:
            cmd = [self.bins['gbak'], '-b', '-g'] + self.auth_args() + [self.dsn(self.source_id()), tmp_path]
            self.run([cmd], what='gbak backup of %s' % self.source_id())
            digest, size = self.io.hash_file(tmp_path)
            if not size:
                raise BackupError('gbak wrote nothing for %s' % self.source_id())
            return dict(size=size, sha256=digest, checksum_method='read once after gbak wrote the file', row_counts=None)
        row_counts = self.row_counts() if count_rows else None
        cmd = [self.bins['gbak'], '-b', '-g'] + self.auth_args() + [self.dsn(self.source_id()), 'stdout']
        result = self.stream_to(tmp_path, [cmd], 'gbak backup of %s' % self.source_id())
        if result['size'] == 0:
            raise BackupError('gbak wrote nothing for %s' % self.source_id())
        result['row_counts'] = row_counts
        return result

    def scratch_path(self, target_hint, purpose):
        folder = os.path.dirname(target_hint.replace('\\', '/')) if self.io.remote else os.path.dirname(target_hint)
        base = os.path.basename(target_hint.replace('\\', '/')) if self.io.remote else os.path.basename(target_hint)
        return os.path.join(folder, '.%s.%s.%s.fdb' % (base, purpose, secrets.token_hex(4)))

    def restore_scratch(self, path, manifest, target_hint, purpose='restoring'):
        scratch = self.scratch_path(target_hint, purpose)
        if self.io.remote:  # gbak.exe reads the backup file on the host itself
            done = False
            try:
                self.run([[self.bins['gbak'], '-c'] + self.auth_args() + [path, self.dsn(scratch)]],
                         what='gbak restore of %s' % path)
                done = True
            finally:
                if not done:
                    self.drop_scratch(scratch)
            return scratch
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
        if self.io.remote:
            if self.io.exists(handle):
                self.io.remove(handle)
            return
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
        if self.io.remote:
            self.swap_in_remote(handle, target)
            return
        if os.path.exists(target):
            others = self.attachments(target)
            if others:
                raise BackupError('database %s has %d other attachments; stop its services before restoring' % (target, others))
        if not os.path.exists(handle):
            raise BackupError('the restored scratch database %s is not visible on this host; run the module on the'
                              ' database server' % handle)
        os.replace(handle, target)

    def swap_in_remote(self, handle, target):
        """The restored scratch database takes the target's place on the host: the target renamed aside (the host's
        rename names a file the Firebird server still holds open, and nothing is replaced then), the scratch renamed
        in, the old file removed; put back when the second rename fails."""
        old = None
        if self.io.exists(target):
            old = self.scratch_path(target, 'replaced')
            self.io.rename(target, old)
        try:
            self.io.rename(handle, target)
        except Exception:
            if old:
                self.io.rename(old, target)
            raise
        if old:
            self.io.remove(old)
