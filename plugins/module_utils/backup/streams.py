# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streams and files for db_backup: a pipeline of client programs hashed as it is written, file and tree checksums,
the check of a backup against its manifest, secret option files and the small file operations (exclusive open,
remove, fsync).

``subprocess.Popen`` is used instead of ``run_command`` because ``run_command`` buffers the whole output in
memory, and a dump can be larger than the memory of the host.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import CHUNK, tail


# ----------------------------------------------------------------------------------------------
# streaming

class HashingWriter:
    """Write chunks to a file object while hashing and counting them."""

    def __init__(self, handle):
        self.handle = handle
        self.sha = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk):
        self.handle.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self):
        return self.sha.hexdigest()


class TailKeeper:
    """Keep the last ``limit`` bytes of a stream."""

    def __init__(self, limit=65536):
        self.limit = limit
        self.data = b''
        self.size = 0

    def __call__(self, chunk):
        self.size += len(chunk)
        self.data = (self.data + chunk)[-self.limit:]


def run_pipeline(cmds, stdin=None, sink=None, env=None):
    """Run ``cmds`` connected by pipes; feed the last one's output to ``sink`` in chunks.

    Returns ``[(program, returncode, stderr)]``.  On any exception (a full disk in ``sink``) every
    process is killed before the exception propagates.
    """
    procs = []
    errs = []
    prev = stdin if stdin is not None else subprocess.DEVNULL
    done = False
    try:
        for index, cmd in enumerate(cmds):
            last = index == len(cmds) - 1
            err = tempfile.TemporaryFile()
            errs.append(err)
            proc = subprocess.Popen(cmd, stdin=prev, stdout=subprocess.PIPE if (not last or sink) else subprocess.DEVNULL,
                                    stderr=err, env=env, close_fds=True)
            if index > 0:
                prev.close()
            prev = proc.stdout
            procs.append(proc)
        if sink is not None:
            out = procs[-1].stdout
            while True:
                chunk = out.read(CHUNK)
                if not chunk:
                    break
                sink(chunk)
            out.close()
        for proc in procs:
            proc.wait()
        done = True
    finally:
        if not done:  # any exception, the caller's exit exceptions included: kill first, then let it propagate
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                if proc.stdout:
                    proc.stdout.close()
        results = []
        for cmd, err in zip(cmds, errs):
            err.seek(0)
            results.append([os.path.basename(cmd[0]), None, err.read().decode('utf-8', 'replace')])
            err.close()
    for result, proc in zip(results, procs):
        result[1] = proc.returncode
    return [tuple(r) for r in results]


def pipeline_failure(results, error_patterns=()):
    """A sentence for the first failed process (non-zero exit, or an error on stderr despite exit 0)."""
    # a process killed by SIGPIPE after everything downstream of it succeeded was cut short by a reader that had
    # read all it needed (pg_restore --list stops after the table of contents): not a failure
    failed = [r for i, r in enumerate(results)
              if r[1] != 0 and not (r[1] == -13 and all(later[1] == 0 for later in results[i + 1:]) and i < len(results) - 1)]
    # a process killed by SIGPIPE only failed because the one after it did
    real = [r for r in failed if r[1] != -13] or failed
    if real:
        name, code, err = real[0]
        return '%s exited with %s: %s' % (name, code, tail(err) or 'no message')
    for name, _code, err in results:
        for pattern in error_patterns:
            match = re.search(pattern, err)
            if match:
                return '%s exited 0 but reported an error: %s' % (name, tail(err))
    return None


def hash_file(path):
    sha = hashlib.sha256()
    size = 0
    with open(path, 'rb') as handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def hash_tree(root):
    """Per-file sha256 of a folder (directory format) and one digest over the sorted list."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            digest, size = hash_file(full)
            files[os.path.relpath(full, root)] = dict(size=size, sha256=digest)
    summary = hashlib.sha256()
    for rel in sorted(files):
        summary.update(('%s  %s\n' % (files[rel]['sha256'], rel)).encode('utf-8'))
    return files, summary.hexdigest(), sum(f['size'] for f in files.values())


def check_checksum(manifest, path, io=None):
    """None when ``path`` still matches the manifest's sha256 (every file for a folder), else a sentence.
    ``io``: a remote host's operations (``backup/hostio.py``) instead of the local files."""
    if io is not None:
        if not io.exists(path):
            return 'backup %s is missing' % path
        if io.isdir(path):
            return 'backup %s is a folder: its files are checked where the module runs, not on a remote host' % path
        digest, size = io.hash_file(path)
        return _compare(manifest, path, digest, size)
    if not os.path.exists(path):
        return 'backup %s is missing' % path
    if os.path.isdir(path):
        files, digest, _size = hash_tree(path)
        recorded = manifest.get('files') or {}
        for rel in sorted(set(files) | set(recorded)):
            if rel not in files:
                return 'file %s of backup %s is missing' % (rel, path)
            if rel not in recorded:
                return 'file %s in backup %s is not in its manifest' % (rel, path)
            if files[rel]['sha256'] != recorded[rel].get('sha256'):
                return 'checksum of %s in backup %s does not match its manifest (damaged)' % (rel, path)
        if digest != manifest.get('sha256'):
            return 'checksum of backup %s does not match its manifest (damaged)' % path
        return None
    digest, size = hash_file(path)
    return _compare(manifest, path, digest, size)


def _compare(manifest, path, digest, size):
    if size != manifest.get('size'):
        return 'backup %s has %d bytes, its manifest says %s (damaged or truncated)' % (path, size, manifest.get('size'))
    if digest != manifest.get('sha256'):
        return 'sha256 of backup %s is %s, its manifest says %s (damaged)' % (path, digest, manifest.get('sha256'))
    return None


class SecretFiles:
    """0600 files for passwords in a private 0700 folder, removed by :meth:`cleanup`."""

    def __init__(self, parent=None):
        self.folder = tempfile.mkdtemp(prefix='db_backup-', dir=parent)
        os.chmod(self.folder, 0o700)

    def write(self, name, text):
        path = os.path.join(self.folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
        return path

    def cleanup(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def open_exclusive(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, 'wb', buffering=0)


def remove_path(path):
    if path is None:
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass


def fsync_path(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_os_error(exc, path):
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return 'no space left on the device of %s while writing the backup' % path
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return '%s is not writable: %s' % (path, exc.strerror)
    return '%s: %s' % (path, exc)
