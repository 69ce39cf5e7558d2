# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a db_backup run reaches its files and programs: the few operations the runner and the engines need.

``LocalIO`` does them here, with ``os`` and ``subprocess`` (the module on a POSIX host: unchanged behaviour).
A Windows host's upgrade (the ``upgrade_cutover`` action plugin on the controller) gives the runner another object with
the same methods and ``remote = True``, carried out with the ansible.windows modules
(``plugins/plugin_utils/windows_host.py``: ``WindowsBackupIO``). The runner and the engines are one implementation
for both; an engine that needs more than these operations (a pipeline, a stream, Python's sqlite3 or a database
driver on the host) refuses a remote host in words before anything is touched (``REMOTE_ENGINES``).

==================================  ========================================================================
``exists(path)`` / ``isdir(path)``   what is there (a link counts as existing)
``listdir(path)``                    the names in a folder ([] when it cannot be read)
``read_text(path)``                  a text file (UTF-8), None when missing or unreadable
``write_new(path, text)``            a new file (the runner's temporary names are unique), flushed to disk
``rename(src, dst)`` / ``remove``    rename in one folder; remove a file or folder (links not followed)
``mkdir(path)``                      a private folder
``writable(path)``                   None when a file can be created in the folder, else why not
``free_space(path)``                 bytes free for this user where ``path`` is (or would be)
``hash_file(path)``                  ``(sha256 hex, size)`` of a file
``size(path)``                       the size of a file in bytes (None when it is not a file)
``fsync_dir(path)``                  the folder's entries flushed (renames made durable)
``run(argv, env)``                   ``(rc, stdout, stderr)`` of one program
==================================  ========================================================================
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import fsync_path, hash_file, remove_path

# the engines that need only the operations above: these run on a remote host (mssql: sqlcmd on the host, the file
# SQL Server writes; firebird: gbak.exe on the host, writing and reading the backup file itself)
REMOTE_ENGINES = ('mssql', 'firebird')


class LocalIO:
    """The operations where the module runs."""

    remote = False

    @staticmethod
    def exists(path):
        return os.path.lexists(path)

    @staticmethod
    def isdir(path):
        return os.path.isdir(path)

    @staticmethod
    def listdir(path):
        try:
            return os.listdir(path)
        except OSError:
            return []

    @staticmethod
    def read_text(path):
        try:
            with open(path, encoding='utf-8') as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError):
            return None

    @staticmethod
    def write_new(path, text):
        with open(path, 'x', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    @staticmethod
    def rename(src, dst):
        os.rename(src, dst)

    @staticmethod
    def remove(path):
        remove_path(path)

    @staticmethod
    def mkdir(path):
        os.mkdir(path, 0o700)

    @staticmethod
    def writable(path, check_mode=False):
        if check_mode:
            return None if os.access(path, os.W_OK | os.X_OK) else 'not writable'
        try:
            fd, probe = tempfile.mkstemp(prefix='.db_backup-probe-', dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    @staticmethod
    def free_space(folder):
        """Bytes available to this user in the filesystem holding ``folder`` (its nearest existing parent)."""
        probe = os.path.abspath(folder)
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        st = os.statvfs(probe)
        return st.f_bavail * st.f_frsize

    @staticmethod
    def hash_file(path):
        return hash_file(path)

    @staticmethod
    def size(path):
        return os.path.getsize(path) if os.path.isfile(path) else None

    @staticmethod
    def fsync_dir(path):
        fsync_path(path)

    @staticmethod
    def run(argv, env=None):
        proc = subprocess.run([str(a) for a in argv], env=env, capture_output=True, check=False)
        return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')
