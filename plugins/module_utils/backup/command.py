# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""db_backup engine ``command``: the product's own backup program, then the manifest, checksums and verification.

The vendor's command (``command.argv``, run without a shell in ``command.chdir`` with ``command.environment`` and
``login_password`` in the variable ``command.password_env``, killed with its whole process group after
``command.timeout`` seconds) writes its backup somewhere of its own; ``command.output`` (an absolute path or
glob) says where.  What it wrote is what matches ``output`` after the run and did not match, or matched with
another size, modification time or inode, before it; nothing written (or an exit code other than 0) fails the task.
Those files and folders are stored in ``dest`` as one ``tar`` (optionally compressed), hashed while it is written,
with every file's own sha256 in the manifest.

Verification: ``quick`` reads the whole archive back and compares every member with the sha256 the file had
when the vendor's program wrote it, then runs ``command.verify_argv`` (when given) on a copy extracted beside the
backup; ``restore`` also extracts the archive as a test restore and compares the file count and bytes.
A restore runs ``command.restore_argv`` on the extracted copy, or (without it) puts every file back where the
vendor's program wrote it, each through a temporary file and a rename.  In the argument lists ``{backup}`` is
replaced by the extracted copy: the file when the backup holds one file, else the folder holding them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import tarfile

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import CHUNK, BackupError, tail
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.engine import Engine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import hash_file, remove_path

PLACEHOLDER = '{backup}'


def command_argument_spec():
    """The suboptions of db_backup's ``command`` option."""
    return dict(
        argv=dict(type='list', elements='str'),
        chdir=dict(type='path'),
        timeout=dict(type='int', default=3600),
        environment=dict(type='dict', default={}),
        password_env=dict(type='str', no_log=False),
        output=dict(type='str'),
        verify_argv=dict(type='list', elements='str'),
        restore_argv=dict(type='list', elements='str'),
    )


def check_command_options(params):
    """Refuse ``command`` options that cannot work, before anything runs."""
    cmd = params.get('command') or {}
    if params['engine'] != 'command':
        if params.get('command'):
            raise BackupError('command applies to engine command only')
        return
    if not cmd.get('argv') or not cmd['argv'][0]:
        raise BackupError('engine command needs command.argv (the product\'s backup program and its arguments)')
    if not cmd.get('output'):
        raise BackupError('engine command needs command.output (the absolute path or glob of what the backup program writes)')
    if not os.path.isabs(cmd['output']):
        raise BackupError('command.output %s must be an absolute path or glob' % cmd['output'])
    if cmd.get('timeout') is not None and cmd['timeout'] < 1:
        raise BackupError('command.timeout must be 1 second or more')
    root, _pattern = split_output(cmd['output'])
    if root in ('', '/'):
        raise BackupError('command.output %s has no folder without wildcards above it; name the folder the program writes into'
                          % cmd['output'])
    for option in ('verify_argv', 'restore_argv'):
        if cmd.get(option) is not None and not [a for a in cmd[option] if a]:
            raise BackupError('command.%s is empty' % option)
    for key, value in (cmd.get('environment') or {}).items():
        if not key or '=' in key or '\x00' in str(key) + str(value):
            raise BackupError('command.environment has a variable name or value that cannot be set: %r' % key)
    if cmd.get('password_env') is not None:
        if not cmd['password_env'] or '=' in cmd['password_env'] or '\x00' in cmd['password_env']:
            raise BackupError('command.password_env %r is not a variable name' % cmd['password_env'])
        if params.get('login_password') is None:
            raise BackupError('command.password_env needs login_password (the password it passes to the programs)')
    if params.get('target_database'):
        raise BackupError('target_database does not apply to engine command (files go back where the program wrote them,'
                          ' or command.restore_argv restores them)')
    try:
        _paths.check_option_path(cmd['output'], 'command.output')
        _paths.check_option_path(cmd.get('chdir'), 'command.chdir')
    except _paths.PathEscape as exc:
        raise BackupError(str(exc)) from None


def split_output(output):
    """``(root, pattern)``: the deepest folder of ``output`` without wildcards, and ``output`` itself."""
    parts = output.rstrip('/').split('/')
    literal = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return '/'.join(literal) or '/', output.rstrip('/')


def snapshot(pattern):
    """``{path: (size, mtime_ns, inode)}`` of what matches ``pattern`` (folders: summed over their files)."""
    found = {}
    for path in glob.glob(pattern, recursive=True):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            size, newest = 0, st.st_mtime_ns
            for folder, _dirs, names in os.walk(path):
                for name in names:
                    inner = os.lstat(os.path.join(folder, name))
                    size += inner.st_size
                    newest = max(newest, inner.st_mtime_ns)
            found[path] = (size, newest, st.st_ino)
        else:
            found[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def substitute(argv, value):
    return [arg.replace(PLACEHOLDER, value) for arg in argv]


class CommandEngine(Engine):
    """The vendor's backup program; its output stored as a ``tar`` with every file's sha256."""

    engine = 'command'
    programs = ()
    error_patterns = (r'(?m)^tar: .*(Cannot|Error)',)

    @property
    def cmd(self):
        return self.params.get('command') or {}

    def resolve_programs(self):
        self.bins['tar'] = self.find_program(['tar'], 'store what the backup program wrote', client=False)
        argv0 = self.cmd['argv'][0]
        if os.sep in argv0:
            if not (os.path.isfile(argv0) and os.access(argv0, os.X_OK)):
                raise BackupError('command.argv[0] %s is not an executable file' % argv0)
            self.bins['command'] = argv0
        else:
            self.bins['command'] = self.find_program([argv0], 'run the backup', client=True)
        super().resolve_programs()

    def tool_versions(self):
        return {os.path.basename(self.bins['command']): 'the product\'s own backup program',
                'tar': (self.module.run_command([self.bins['tar'], '--version'])[1] or 'unknown').splitlines()[0]}

    # -- the database is what the program writes --------------------------------------------------------------
    def source_id(self):
        return self.cmd.get('output')

    def restore_target_default(self):
        return self.cmd.get('output')

    def scratch_hint(self, backup_path):
        return backup_path

    def connect(self, database=None):
        raise BackupError('engine command has no connection')

    def probe(self):
        """No server version; the size estimate is the largest thing ``output`` matches now (the previous backup, if kept)."""
        previous = snapshot(self.cmd['output'])
        return None, max([size for size, _mtime, _ino in previous.values()] or [0]) or None

    def row_counts(self, database=None):
        return None

    def run_program(self, argv, what, cwd=None):
        """Run ``argv`` (no shell) with the command's environment, killed with its process group at the timeout."""
        env = self.env()
        env.update(dict((str(k), str(v)) for k, v in (self.cmd.get('environment') or {}).items()))
        if self.cmd.get('password_env'):
            env[self.cmd['password_env']] = self.params['login_password']  # no_log; this child's environment only
        timeout = self.cmd.get('timeout') or 3600
        try:
            # pylint: disable=consider-using-with
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    cwd=cwd, env=env, start_new_session=True)
        except OSError as exc:
            raise BackupError('%s could not be started: %s' % (what, exc.strerror or exc)) from exc
        try:
            out, _err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _err = proc.communicate()
            raise BackupError('%s did not finish within %d s (command.timeout) and was killed: %s'
                              % (what, timeout, tail(out.decode('utf-8', 'replace'), 500) or 'no output')) from None
        text = out.decode('utf-8', 'replace')
        if proc.returncode != 0:
            raise BackupError('%s exited with %d: %s' % (what, proc.returncode, tail(text, 500) or 'no output'))
        return text

    # -- dump ---------------------------------------------------------------------------------------------------
    def dump(self, tmp_path, count_rows=False):
        output = self.cmd['output']
        root, _pattern = split_output(output)
        before = snapshot(output)
        argv = [self.bins['command']] + list(self.cmd['argv'][1:])
        self.run_program(argv, 'the backup command %s' % self.cmd['argv'][0], cwd=self.cmd.get('chdir'))
        after = snapshot(output)
        written = sorted(path for path, state in after.items() if before.get(path) != state)
        if not written:
            raise BackupError('the backup command %s exited with 0 but wrote nothing matching %s (%s)' % (
                self.cmd['argv'][0], output, 'nothing matches it' if not after else
                '%d match, none new or changed' % len(after)))
        members, hashes = [], {}
        for path in written:
            if os.path.islink(path):
                raise BackupError('%s (written by the backup command) is a symlink; refused' % path)
            rel = os.path.relpath(path, root)
            members.append(rel)
            if os.path.isdir(path):
                for folder, dirs, names in os.walk(path):
                    dirs.sort()
                    for name in sorted(names):
                        full = os.path.join(folder, name)
                        if os.path.islink(full) or not os.path.isfile(full):
                            raise BackupError('%s (written by the backup command) is not a regular file; refused' % full)
                        digest, size = hash_file(full)
                        hashes[os.path.relpath(full, root)] = dict(size=size, sha256=digest)
            else:
                digest, size = hash_file(path)
                hashes[rel] = dict(size=size, sha256=digest)
        cmd = [self.bins['tar'], '--create', '--file=-', '--format=posix', '--numeric-owner',
               '--directory=%s' % root, '--'] + members
        result = self.stream_to(tmp_path, [cmd], 'tar of what the backup command wrote')
        counts = {'files': len(hashes), 'bytes': sum(h['size'] for h in hashes.values())}
        result['row_counts'] = counts
        result['extra'] = dict(output=output, output_root=root, written=hashes, members=members)
        result['checksum_method'] = 'stream; every file hashed after the backup command wrote it'
        return result

    # -- verification -------------------------------------------------------------------------------------------
    def read_members(self, path, manifest):
        """``{name: (size, sha256)}`` of the regular files in the archive, read through the decompressor."""
        handle, dec = self.open_backup_stream(path, manifest)
        proc = None
        found, members = {}, []
        try:
            stream = handle
            if dec:
                # pylint: disable=consider-using-with
                proc = subprocess.Popen(dec[0], stdin=handle, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env=self.env(), close_fds=True)
                stream = proc.stdout
            with tarfile.open(fileobj=stream, mode='r|') as tar:
                for member in tar:
                    members.append(_paths.tar_member(member))
                    if member.isfile():
                        sha = hashlib.sha256()
                        size = 0
                        extracted = tar.extractfile(member)
                        for chunk in iter(lambda: extracted.read(CHUNK), b''):
                            sha.update(chunk)
                            size += len(chunk)
                        found[member.name] = (size, sha.hexdigest())
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError('archive %s cannot be read: %s' % (path, exc)) from exc
        finally:
            handle.close()
            if proc is not None:
                proc.stdout.close()
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        bad = _paths.archive_escapes(members)
        if bad:
            raise BackupError('archive %s has members that would leave the folder it is restored into: %s' % (path, '; '.join(bad[:5])))
        return found

    def quick_check(self, path, manifest):
        found = self.read_members(path, manifest)
        recorded = manifest.get('written') or {}
        for rel in sorted(set(found) | set(recorded)):
            if rel not in found:
                raise BackupError('file %s written by the backup command is missing from archive %s' % (rel, path))
            if rel not in recorded:
                raise BackupError('archive %s holds %s, which its manifest does not list' % (path, rel))
            if found[rel] != (recorded[rel]['size'], recorded[rel]['sha256']):
                raise BackupError('file %s in archive %s differs from what the backup command wrote (sha256 or size)' % (rel, path))
        checks = 'every file re-read from the archive matches the sha256 taken when the backup command wrote it (%d files)' % len(found)
        if self.cmd.get('verify_argv'):
            scratch = self.restore_scratch(path, manifest, path)
            try:
                self.run_program(substitute(self.cmd['verify_argv'], self.placeholder(scratch, manifest)),
                                 'the verify command %s' % self.cmd['verify_argv'][0], cwd=self.cmd.get('chdir'))
            finally:
                self.drop_scratch(scratch)
            checks += '; the verify command %s accepted it' % self.cmd['verify_argv'][0]
        return checks

    @staticmethod
    def placeholder(scratch, manifest):
        members = manifest.get('members') or []
        if len(members) == 1:
            return os.path.join(scratch, members[0])
        return scratch

    def restore_scratch(self, path, manifest, target_hint):
        """Extract the archive into a new folder beside the backup; return that folder."""
        self.read_members(path, manifest)  # refuses escaping members before anything is written
        scratch = os.path.join(os.path.dirname(os.path.abspath(path)),
                               '.%s.restoring.%s' % (os.path.basename(path), secrets.token_hex(4)))
        os.mkdir(scratch, 0o700)
        done = False
        try:
            handle, dec = self.open_backup_stream(path, manifest)
            with handle:
                self.run(dec + [[self.bins['tar'], '--extract', '--file=-', '--no-same-owner', '--directory=%s' % scratch]],
                         stdin=handle, what='tar --extract of %s' % path)
            done = True
        finally:
            if not done:
                remove_path(scratch)
        return scratch

    def scratch_counts(self, handle):
        files, size = 0, 0
        for folder, _dirs, names in os.walk(handle):
            for name in names:
                files += 1
                size += os.lstat(os.path.join(folder, name)).st_size
        return {'files': files, 'bytes': size}

    def drop_scratch(self, handle):
        remove_path(handle)

    # -- restore ------------------------------------------------------------------------------------------------
    def swap_in(self, handle, target, path, manifest):
        if self.cmd.get('restore_argv'):
            self.run_program(substitute(self.cmd['restore_argv'], self.placeholder(handle, manifest)),
                             'the restore command %s' % self.cmd['restore_argv'][0], cwd=self.cmd.get('chdir'))
            remove_path(handle)
            return
        root = manifest.get('output_root')
        if not root or not os.path.isdir(root):
            raise BackupError('the folder %s the backup command wrote into does not exist; nothing was restored' % root)
        placed = []
        for rel in sorted(manifest.get('written') or {}):
            source = os.path.join(handle, rel)
            try:
                dest = _paths.resolve_under(root, rel, 'restored file')
            except _paths.PathEscape as exc:
                raise BackupError(str(exc)) from None
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = os.path.join(os.path.dirname(dest), '.%s.restoring.%s' % (os.path.basename(dest), secrets.token_hex(4)))
            shutil.copyfile(source, tmp)
            shutil.copymode(source, tmp)
            os.replace(tmp, dest)
            placed.append(rel)
        remove_path(handle)
        if not placed:
            raise BackupError('backup %s lists no files to put back' % path)
