# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``files``: a tar of a file or folder, hashed member by member, restored by a swap of the folder."""

from __future__ import annotations

import os
import secrets
import subprocess
import tarfile

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import _PathEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import TailKeeper, remove_path


class FilesEngine(_PathEngine):
    engine = 'files'
    programs = ()
    error_patterns = (r'(?m)^tar: .*(Cannot|Error)',)

    def resolve_programs(self):
        self.bins['tar'] = self.find_program(['tar'], 'copy the folder', client=False)
        super().resolve_programs()

    @staticmethod
    def inventory(root):
        """``(entries, bytes, {relative path: size})`` of a folder: the folder itself, sub-folders, files, links."""
        sizes = {}
        entries = 1
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                full = os.path.join(folder, name)
                st = os.lstat(full)
                entries += 1
                if not os.path.isdir(full) or os.path.islink(full):
                    sizes[os.path.relpath(full, root)] = st.st_size
        return entries, sum(sizes.values()), sizes

    def probe(self):
        path = self.params['path']
        if os.path.islink(path.rstrip('/')):
            raise BackupError('path %s is a symlink (to %s): tar would archive the link, not the folder; give the real folder'
                              % (path, os.readlink(path.rstrip('/'))))
        if not os.path.isdir(path):
            raise BackupError('folder %s does not exist' % path)
        _entries, size, _sizes = self.inventory(path)
        return None, size

    def row_counts(self, database=None):
        entries, size, _sizes = self.inventory(database or self.params['path'])
        return {'entries': entries, 'bytes': size}

    def dump(self, tmp_path, count_rows=False):
        path = os.path.abspath(self.params['path']).rstrip('/')
        entries, size, _sizes = self.inventory(path)
        cmd = [self.bins['tar'], '--create', '--file=-', '--format=posix', '--numeric-owner',
               '--directory=%s' % os.path.dirname(path), '--', os.path.basename(path)]
        result = self.stream_to(tmp_path, [cmd], 'tar of %s' % path)
        result['row_counts'] = {'entries': entries, 'bytes': size}
        result['extra'] = dict(entries=entries, content_bytes=size)
        return result

    def quick_check(self, path, manifest):
        listing = TailKeeper(1 << 30)
        handle, dec = self.open_backup_stream(path, manifest)
        with handle:
            self.run(dec + [[self.bins['tar'], '--list', '--file=-']], stdin=handle, sink=listing,
                     what='tar --list of %s' % path)
        count = len([line for line in listing.data.decode('utf-8', 'replace').splitlines() if line])
        if manifest.get('entries') is not None and count != manifest['entries']:
            raise BackupError('archive %s lists %d entries, the folder had %d' % (path, count, manifest['entries']))
        return 'tar read the whole archive (%d entries)' % count

    def restore_scratch(self, path, manifest, target_hint):
        target_hint = os.path.abspath(target_hint).rstrip('/')
        scratch = os.path.join(os.path.dirname(target_hint),
                               '.%s.restoring.%s' % (os.path.basename(target_hint), secrets.token_hex(4)))
        self.check_members(path, manifest)
        os.mkdir(scratch, 0o700)
        done = False
        try:
            handle, dec = self.open_backup_stream(path, manifest)
            with handle:
                self.run(dec + [[self.bins['tar'], '--extract', '--file=-', '--numeric-owner', '--directory=%s' % scratch]],
                         stdin=handle, what='tar --extract of %s' % path)
            inner = os.listdir(scratch)
            if len(inner) != 1 or not os.path.isdir(os.path.join(scratch, inner[0])):
                raise BackupError('archive %s does not hold exactly one folder' % path)
            done = True
        finally:
            if not done:
                remove_path(scratch)
        return os.path.join(scratch, inner[0])

    def check_members(self, path, manifest):
        """Refuse an archive with a member that would leave the folder it is restored into, before tar writes any.

        Python's tarfile reads the member list (through the decompressor); ``paths.archive_escapes`` replays it:
        ``..``, absolute names, symlinks leading out, members written through a symlink, hard links to a symlink.
        """
        handle, dec = self.open_backup_stream(path, manifest)
        proc = None
        try:
            stream = handle
            if dec:
                proc = subprocess.Popen(dec[0], stdin=handle, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env(),
                                        close_fds=True)
                stream = proc.stdout
            with tarfile.open(fileobj=stream, mode='r|') as tar:
                members = [_paths.tar_member(m) for m in tar]
        except (tarfile.TarError, EOFError) as exc:
            raise BackupError('archive %s cannot be read to check its members: %s' % (path, exc)) from exc
        finally:
            handle.close()
            if proc is not None:
                proc.stdout.close()
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        bad = _paths.archive_escapes(members, links_may_leave=True)  # the folder's own links come back as links
        if bad:
            raise BackupError('archive %s has members that would leave the folder it is restored into, nothing was restored: %s'
                              % (path, '; '.join(bad[:5])))

    def scratch_counts(self, handle):
        return self.row_counts(handle)

    def drop_scratch(self, handle):
        remove_path(os.path.dirname(handle))

    def swap_in(self, handle, target, path, manifest):
        target = os.path.abspath(target).rstrip('/')
        old = None
        if os.path.lexists(target):
            old = os.path.join(os.path.dirname(target), '.%s.replaced.%s' % (os.path.basename(target), secrets.token_hex(4)))
            os.rename(target, old)
        try:
            os.rename(handle, target)
        except OSError:
            if old:
                os.rename(old, target)
            raise
        remove_path(os.path.dirname(handle))
        remove_path(old)
