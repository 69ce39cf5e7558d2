# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``sqlite``: SQLite's online backup API, ``PRAGMA integrity_check``, and a file swap for the restore."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import urllib.parse

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, CHUNK, external_compression
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import _PathEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import HashingWriter, fsync_path, hash_file, open_exclusive, remove_path


class SqliteEngine(_PathEngine):
    engine = 'sqlite'
    programs = ()

    def connect(self, database=None):
        path = database or self.params['path']
        if not os.path.exists(path):
            raise BackupError('SQLite database %s does not exist' % path)
        try:
            conn = sqlite3.connect(path, timeout=self.params.get('connect_timeout') or 10, isolation_level=None)
            conn.execute('SELECT count(*) FROM sqlite_master').fetchone()
            return conn
        except sqlite3.Error as exc:
            raise BackupError('cannot open SQLite database %s: %s' % (path, exc)) from exc

    def probe(self):
        conn = self.connect()
        try:
            size = os.path.getsize(self.params['path'])
            if os.path.exists(self.params['path'] + '-wal'):
                size += os.path.getsize(self.params['path'] + '-wal')
            return sqlite3.sqlite_version, size
        finally:
            conn.close()

    def tool_versions(self):
        versions = super().tool_versions()
        versions['sqlite3 (Python backup API)'] = sqlite3.sqlite_version
        return versions

    def backup_copy(self, copy_path):
        src = self.connect()
        try:
            fd = os.open(copy_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            dst = sqlite3.connect(copy_path)
            try:
                src.backup(dst)  # one step: a consistent copy even while others write
            finally:
                dst.close()
        except sqlite3.Error as exc:
            raise BackupError('SQLite backup of %s failed: %s' % (self.params['path'], exc)) from exc
        finally:
            src.close()

    def dump(self, tmp_path, count_rows=False):
        row_counts = self.row_counts() if count_rows else None
        if not self.compressor:
            self.backup_copy(tmp_path)
            fsync_path(tmp_path)
            digest, size = hash_file(tmp_path)
            result = dict(size=size, sha256=digest, checksum_method='read once after the backup API wrote the copy')
        else:
            copy = tmp_path + '.copy'
            try:
                self.backup_copy(copy)
                with open(copy, 'rb') as handle, open_exclusive(tmp_path) as out:
                    writer = HashingWriter(out)
                    self.run([self.compress_cmd()], stdin=handle, sink=writer, what='compressing the SQLite copy')
                    os.fsync(out.fileno())
                result = dict(size=writer.size, sha256=writer.hexdigest, checksum_method='stream')
            finally:
                remove_path(copy)
        result['row_counts'] = row_counts
        return result

    def plain_copy(self, path, manifest, out_path):
        """Write the uncompressed database of backup ``path`` to ``out_path``."""
        handle, dec = self.open_backup_stream(path, manifest)
        with handle, open_exclusive(out_path) as out:
            if dec:
                self.run(dec, stdin=handle, sink=out.write, what='decompressing %s' % path)
            else:
                shutil.copyfileobj(handle, out, CHUNK)
            os.fsync(out.fileno())

    def integrity(self, db_path):
        uri = 'file:%s?immutable=1' % urllib.parse.quote(os.path.abspath(db_path))
        try:
            conn = sqlite3.connect(uri, uri=True)
            try:
                rows = conn.execute('PRAGMA integrity_check').fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise BackupError('PRAGMA integrity_check cannot read %s: %s' % (db_path, exc)) from exc
        if [r[0] for r in rows] != ['ok']:
            raise BackupError('PRAGMA integrity_check on %s: %s' % (db_path, '; '.join(str(r[0]) for r in rows[:5])))

    def quick_check(self, path, manifest):
        if not external_compression('sqlite', 'sqlite', manifest.get('compression')):
            self.integrity(path)
        else:
            scratch = os.path.join(os.path.dirname(path), '.%s.check.%s' % (os.path.basename(path), secrets.token_hex(4)))
            try:
                self.plain_copy(path, manifest, scratch)
                self.integrity(scratch)
            finally:
                remove_path(scratch)
        return 'PRAGMA integrity_check returned ok'

    def restore_scratch(self, path, manifest, target_hint):
        folder = os.path.dirname(os.path.abspath(target_hint))
        scratch = os.path.join(folder, '.%s.restoring.%s' % (os.path.basename(target_hint), secrets.token_hex(4)))
        done = False
        try:
            self.plain_copy(path, manifest, scratch)
            self.integrity(scratch)
            done = True
        finally:
            if not done:
                remove_path(scratch)
        return scratch

    def drop_scratch(self, handle):
        remove_path(handle)

    def swap_in(self, handle, target, path, manifest):
        for suffix in ('-wal', '-shm', '-journal'):
            remove_path(target + suffix)  # left from the replaced database; they would corrupt the restored one
        if os.path.exists(target):
            shutil.copystat(target, handle)
            st = os.stat(target)
            try:
                os.chown(handle, st.st_uid, st.st_gid)
            except OSError:
                pass
        os.replace(handle, target)
