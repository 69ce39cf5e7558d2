# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade engine's host interface on a Windows host, carried out from the controller.

:class:`WindowsHost` has the methods of :class:`~ansible_collections.clinops.upgrade.plugins.module_utils.host.PosixHost`;
the action plugin ``upgrade_cutover`` runs the same :class:`~...cutover.Cutover` with it on the controller. Each
operation is one (or a few) calls of an ansible.windows module through the action plugin's ``_execute_module``, so the
Windows host needs no Python:

=====================  ===============================================================================================
operation              ansible.windows module
=====================  ===============================================================================================
exists/isdir/isfile/   ``win_stat`` (``follow: false``: a symlink or junction is seen as itself; ``lnk_source`` for
islink/readlink/       ``readlink``; ``realpath`` asks about each component and resolves every link on the way)
realpath
listdir                ``win_find`` (``file_type: any``, ``hidden: true``, not recursive)
read_text/read_bytes   ``slurp`` (bytes as they are: CRLF, UTF-16 and ANSI files are read, and written, byte for byte)
write_atomic           ``win_powershell`` script ``write``: a temporary file beside the target, flushed, then
                       ``[IO.File]::Replace`` / ``Move``  over it
rename                 ``win_powershell`` script ``rename``: ``[IO.Directory]::Move`` with retries while a file is held
                       open (sharing violation); when it still fails, the file held open is named
makedirs/remove_tree   ``win_file`` (``state: directory`` / ``state: absent``; win_file deletes a link, not its target)
copy_tree              ``win_powershell`` script ``copy_tree``
unpack                 ``win_powershell`` script ``zip_list`` (the member names), checked here with
                       ``paths.archive_escapes`` before anything is written, then script ``zip_extract`` (the checked
                       members only)
services               ``win_service_info``, ``win_command`` (``sc.exe stop``, ``taskkill.exe /F /PID``),
                       ``win_wait_for``, ``win_service`` - the Windows path of ``service_stop_ordered``'s action plugin
run                    ``win_powershell`` script ``run``: the program started, killed with its children after the timeout
free_space             ``win_powershell`` script ``free_space``: ``[IO.DriveInfo]`` of the installation's drive
clock                  ``win_powershell`` script ``clock``: UTC time and the time zone's id
journal and lock       files on the host, through ``slurp`` / script ``write`` / ``win_file``
prefs_migrate          the Windows path of ``prefs_migrate``'s action plugin (``win_find``, ``win_stat``, ``slurp``,
                       ``win_copy``)
db_backup (mssql,      db_backup's runner and engine with :class:`WindowsBackupIO`: sqlcmd / gbak.exe through script
firebird)              ``run``, the backup hashed on the host by ``win_stat`` (``get_checksum``, ``checksum_algorithm:
                       sha256``), manifests through ``win_find``/``slurp``/script ``write``, renames and removals as above
schema_update          its command mode: the vendor's tool, ``version_command`` and sqlcmd (``version_query``) through
(migrate_*)            script ``run`` with the step's timeout
=====================  ===============================================================================================

Every ``win_powershell`` script starts with the line ``# clinops.upgrade: <name>`` and takes its input only through
``parameters`` (never through text put into the script), so no path or value is ever parsed as PowerShell.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed, run_module as _run_module

RENAME_RETRIES = 10
RENAME_DELAY_MS = 500
DRIVE = re.compile(r'^[A-Za-z]:[\\/]')

SCRIPTS = {}
# the calls that change nothing on the host (the others make WindowsHost forget what it knows of the files)
READ_ONLY = ('ansible.windows.win_stat', 'ansible.windows.slurp', 'ansible.windows.win_find', 'ansible.windows.win_service_info')


# Long paths: '\\?\' before a full, normalized path lifts the 260-character limit of the .NET Framework file APIs that
# Windows PowerShell 5.1 uses (no LongPathsEnabled needed); a path with '.' or '..' components is left as it is (the
# prefix turns normalization off). Defined after the script's param() block, which PowerShell wants first.
LONG_PATH = r'''
function Get-LongPath([string]$Path) {
    if (-not $Path -or $Path.StartsWith('\\?\') -or $Path -match '\\\.{1,2}(\\|$)') { return $Path }
    if ($Path -match '^[A-Za-z]:\\') { return '\\?\' + $Path }
    if ($Path.StartsWith('\\')) { return '\\?\UNC\' + $Path.Substring(2) }
    return $Path
}
function Get-ShortPath([string]$Path) {
    if ($Path -and $Path.StartsWith('\\?\UNC\')) { return '\\' + $Path.Substring(8) }
    if ($Path -and $Path.StartsWith('\\?\')) { return $Path.Substring(4) }
    return $Path
}
'''.strip()


# The scripts that only read: they declare SupportsShouldProcess, which is how win_powershell is told that a script may
# run in check mode (any other script is skipped there, "skipped, running in check mode", with no output). They change
# nothing, so -WhatIf has nothing to hold back; the scripts that change the host do not declare it and never run in
# check mode (the engine does not call them there: WindowsHost.script refuses).
READ_ONLY_SCRIPTS = set()
SHOULD_PROCESS = '[CmdletBinding(SupportsShouldProcess)]'


def _script(name, body, long_paths=(), read_only=False):
    """Register script ``name``; the parameters named in ``long_paths`` are given the long-path prefix first; a
    ``read_only`` script runs in check mode too."""
    body = body.strip() + '\n'
    if long_paths:
        head, rest = body.split('\n', 1)
        if not head.startswith('param('):
            raise ValueError('script %s: the long-path helpers go after its param() block, which must come first' % name)
        body = '%s\n%s\n%s%s' % (head, LONG_PATH, ''.join('$%s = Get-LongPath $%s\n' % (p, p) for p in long_paths), rest)
    if read_only:
        if not body.startswith('param('):
            raise ValueError('script %s: SupportsShouldProcess is declared on a param() block, which must come first' % name)
        body = '%s\n%s' % (SHOULD_PROCESS, body)
        READ_ONLY_SCRIPTS.add(name)
    SCRIPTS[name] = '# clinops.upgrade: %s\n%s' % (name, body)
    return SCRIPTS[name]


_script('write', r'''
param([string]$Path, [string]$Content)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $true
$bytes = [Convert]::FromBase64String($Content)
$folder = [IO.Path]::GetDirectoryName($Path)
$tmp = [IO.Path]::Combine($folder, '.' + [IO.Path]::GetFileName($Path) + '.' + $PID + '.tmp')
try {
    $stream = [IO.File]::Open($tmp, [IO.FileMode]::Create, [IO.FileAccess]::Write, [IO.FileShare]::None)
    try { $stream.Write($bytes, 0, $bytes.Length); $stream.Flush($true) } finally { $stream.Dispose() }
    if ([IO.File]::Exists($Path)) { [IO.File]::Replace($tmp, $Path, $null) } else { [IO.File]::Move($tmp, $Path) }
} finally {
    if ([IO.File]::Exists($tmp)) { [IO.File]::Delete($tmp) }
}
@{ written = $bytes.Length }
''', long_paths=('Path',))

_script('rename', r'''
param([string]$Source, [string]$Destination, [int]$Retries, [int]$DelayMs)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $true
$attempt = 0
while ($true) {
    $attempt++
    try {
        if ([IO.Directory]::Exists($Source)) { [IO.Directory]::Move($Source, $Destination) }
        else { [IO.File]::Move($Source, $Destination) }
        return @{ renamed = $true; attempts = $attempt; locked = $null; message = $null }
    } catch [System.IO.IOException] {
        $problem = $_.Exception
        # 0x80070020 sharing violation, 0x80070021 lock violation, 0x80070005 access denied (a file open in the tree)
        if ($attempt -ge $Retries) { break }
        Start-Sleep -Milliseconds $DelayMs
    }
}
$locked = $null
if ([IO.Directory]::Exists($Source)) {
    foreach ($file in [IO.Directory]::EnumerateFiles($Source, '*', [IO.SearchOption]::AllDirectories)) {
        try { [IO.File]::Open($file, 'Open', 'ReadWrite', 'None').Dispose() } catch { $locked = $file; break }
    }
}
@{ renamed = $false; attempts = $attempt; locked = (Get-ShortPath $locked); message = $problem.Message }
''', long_paths=('Source', 'Destination'))

_script('copy_tree', r'''
param([string]$Source, [string]$Destination)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $true
Copy-Item -LiteralPath $Source -Destination $Destination -Recurse -Force
@{ copied = $true }
''', long_paths=('Source', 'Destination'))

_script('zip_list', r'''
param([string]$Archive)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
Add-Type -AssemblyName System.IO.Compression.FileSystem
$zip = [IO.Compression.ZipFile]::OpenRead($Archive)
try {
    $names = @(foreach ($entry in $zip.Entries) { $entry.FullName })
} finally { $zip.Dispose() }
@{ names = $names }
''', long_paths=('Archive',), read_only=True)

_script('zip_extract', r'''
param([string]$Archive, [string]$Destination, [string[]]$Names)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $true
Add-Type -AssemblyName System.IO.Compression.FileSystem
$wanted = @{}
foreach ($name in $Names) { $wanted[$name] = $true }
$root = [IO.Path]::GetFullPath($Destination).TrimEnd('\') + '\'
$count = 0
$zip = [IO.Compression.ZipFile]::OpenRead($Archive)
try {
    foreach ($entry in $zip.Entries) {
        if (-not $wanted.ContainsKey($entry.FullName)) { continue }
        $target = [IO.Path]::GetFullPath([IO.Path]::Combine($root, $entry.FullName.Replace('/', '\')))
        if (-not $target.StartsWith($root, [StringComparison]::OrdinalIgnoreCase)) { throw "member $($entry.FullName) leaves $root" }
        if ($entry.FullName.EndsWith('/')) { [void][IO.Directory]::CreateDirectory($target) }
        else {
            [void][IO.Directory]::CreateDirectory([IO.Path]::GetDirectoryName($target))
            [IO.Compression.ZipFileExtensions]::ExtractToFile($entry, $target, $true)
        }
        $count++
    }
} finally { $zip.Dispose() }
@{ extracted = $count }
''', long_paths=('Archive', 'Destination'))

_script('run', r'''
param([string[]]$Argv, [string]$Chdir, [int]$TimeoutMs)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $true
$info = New-Object System.Diagnostics.ProcessStartInfo
$info.FileName = $Argv[0]
$info.Arguments = (@($Argv | Select-Object -Skip 1) | ForEach-Object { '"' + ($_ -replace '(\\*)"', '$1$1\"' -replace '(\\+)$', '$1$1') + '"' }) -join ' '
if ($Chdir) { $info.WorkingDirectory = $Chdir }
$info.UseShellExecute = $false
$info.RedirectStandardOutput = $true
$info.RedirectStandardError = $true
$process = [Diagnostics.Process]::Start($info)
$out = $process.StandardOutput.ReadToEndAsync()
$err = $process.StandardError.ReadToEndAsync()
if (-not $process.WaitForExit($TimeoutMs)) {
    & taskkill.exe /F /T /PID $process.Id | Out-Null
    return @{ timed_out = $true; rc = $null; stdout = ''; stderr = '' }
}
$process.WaitForExit()
@{ timed_out = $false; rc = $process.ExitCode; stdout = $out.Result; stderr = $err.Result }
''')

_script('free_space', r'''
param([string]$Path)
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$drive = New-Object IO.DriveInfo([IO.Path]::GetPathRoot([IO.Path]::GetFullPath($Path)))
@{ free = $drive.AvailableFreeSpace; drive = $drive.Name }
''', read_only=True)

_script('clock', r'''
param()
$ErrorActionPreference = 'Stop'
$Ansible.Changed = $false
$now = [DateTimeOffset]::UtcNow
@{ utc = $now.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'+00:00'"); epoch = $now.ToUnixTimeMilliseconds() / 1000.0
   timezone = [TimeZoneInfo]::Local.Id }
''', read_only=True)


MAX_LINK_HOPS = 40
UNC = re.compile(r'^[\\/]{2}[^\\/]+[\\/][^\\/]+')


def _split_root(path):
    """``(root, components)`` of an absolute path with ``/``: ``C:/a/b`` is ``('C:/', ['a', 'b'])``, ``//srv/share/a``
    ``('//srv/share/', ['a'])``, ``/tmp/a`` (the lab's doubles) ``('/', ['tmp', 'a'])``; ``(None, [])`` when relative."""
    text = path.replace('\\', '/')
    if DRIVE.match(text):
        root, rest = text[:2].upper() + '/', text[3:]
    elif UNC.match(text):
        found = UNC.match(text).group(0)
        root, rest = found.replace('\\', '/') + '/', text[len(found):]
    elif text.startswith('/'):
        root, rest = '/', text
    else:
        return None, []
    return root, [p for p in rest.split('/') if p and p != '.']


def _lexical(parts):
    """``..`` taken away with the component before it, as Windows normalizes a path before resolving it."""
    kept = []
    for part in parts:
        if part == '..':
            if kept:
                kept.pop()
        else:
            kept.append(part)
    return kept


def _parent(current, root):
    if current.rstrip('/') == root.rstrip('/'):
        return root
    head = current.rstrip('/').rsplit('/', 1)[0]
    return head + '/' if len(head) < len(root) else head


def native(path):
    """A path as the Windows modules get it: ``C:/PMOD/app`` becomes ``C:\\PMOD\\app``, ``//server/share/x``
    ``\\\\server\\share\\x`` (other paths unchanged)."""
    if isinstance(path, str) and (DRIVE.match(path) or path.startswith(('//', '\\\\'))):
        return path.replace('/', '\\')
    return path


def is_windows_abs(path):
    """``C:\\...``, ``C:/...``, a UNC path, or a rooted path (the lab's doubles)."""
    return isinstance(path, str) and (bool(DRIVE.match(path)) or path.startswith(('\\\\', '/')))


class _ServiceAction:
    """What service_stop_ordered's Windows path needs of an action plugin: its module calls and its task's options."""

    class _Task:
        check_mode = False
        diff = False

    def __init__(self, host, params):
        self._host = host
        self._params = params
        self._task = self._Task()

    def windows_module(self, name, args, task_vars):
        del task_vars
        return self._host.call(name, args)

    def validate_argument_spec(self, argument_spec=None, **kwargs):
        checked = ArgumentSpecValidator(argument_spec, **kwargs).validate(
            dict((k, v) for k, v in self._params.items() if v is not None))
        if checked.error_messages:
            raise StepFailed('invalid service_stop_ordered options, nothing was done: %s' % '; '.join(checked.error_messages))
        return checked, checked.validated_parameters


class WindowsBackupIO:
    """The operations of a db_backup run (``module_utils/backup/hostio.py``) on the Windows host."""

    remote = True
    RUN_TIMEOUT = 6 * 3600.0  # a BACKUP DATABASE of a large database; sqlcmd's own -l bounds the login

    def __init__(self, host):
        self.host = host

    def exists(self, path):
        return self.host.exists(path)

    def isdir(self, path):
        return self.host.isdir(path)

    def listdir(self, path):
        return self.host.listdir(path) if self.host.isdir(path) else []

    def read_text(self, path):
        return self.host.read_text(path)

    def write_new(self, path, text):
        self.host.write_atomic(path, text)

    def rename(self, src, dst):
        self.host.rename(src, dst)

    def remove(self, path):
        self.host.remove_tree(path)

    def mkdir(self, path):
        self.host.makedirs(path)

    def writable(self, path, check_mode=False):
        """Check mode asks nothing more (win_stat cannot tell the ACL); else a probe file written and removed."""
        if check_mode:
            return None
        probe = path.rstrip('/\\') + '/.db_backup-probe-%d' % os.getpid()
        try:
            self.host.write_atomic(probe, b'')
            self.host.remove_tree(probe)
        except StepFailed as exc:
            return exc.msg
        return None

    def free_space(self, path):
        return self.host.free_space(path)

    def size(self, path):
        found = self.host.stat(path)
        return int(found.get('size') or 0) if found.get('exists') and not found.get('isdir') else None

    def hash_file(self, path):
        """``(sha256, size)`` from ``win_stat`` (``get_checksum``, ``checksum_algorithm: sha256``): the file is read on
        the host, only the digest comes back."""
        args = dict(path=native(path), follow=False, get_checksum=True, checksum_algorithm='sha256')
        res = self.host.must('ansible.windows.win_stat', args, 'sha256 of %s' % path)
        found = res.get('stat') or {}
        if not found.get('exists') or found.get('isdir'):
            raise StepFailed('sha256 of %s: it is not a file on the host' % path)
        return found.get('checksum'), int(found.get('size') or 0)

    @staticmethod
    def fsync_dir(path):
        """Nothing to do: the renames on the host are NTFS metadata operations, journaled by the file system."""
        del path

    def run(self, argv, env=None):
        if env:
            raise StepFailed('%s: an environment for the program is not passed to a Windows host' % argv[0])
        out = self.host.run(argv, timeout=self.RUN_TIMEOUT)
        return out['rc'], out['stdout'], out['stderr']


class _ParentModule:
    """What a module's in-process run (see host.run_module) needs of its parent module, for a Windows host: the engine
    module's no_log values, check mode and warnings; a program is found by the host when it runs there, and nothing is
    run on the controller."""

    def __init__(self, host):
        module = getattr(host, 'module', None)
        self.no_log_values = module.no_log_values if module is not None else set()
        self.check_mode = bool(module.check_mode) if module is not None else False
        self.tmpdir = None
        self._module = module
        self.host = host

    def warn(self, warning):
        if self._module is not None:
            self._module.warn(warning)

    @staticmethod
    def get_bin_path(name, required=False):
        del required
        return name  # found by the host when it runs

    @staticmethod
    def run_command(args):
        raise StepFailed('%s would run on the controller, not on the Windows host; refused' % args[0])


class _BackupParent(_ParentModule):
    """db_backup's parent: its files and programs reached through :class:`WindowsBackupIO`."""

    def __init__(self, host):
        super().__init__(host)
        self.backup_io = WindowsBackupIO(host)


class _SchemaParent(_ParentModule):
    """schema_update's parent: ``host_run`` carries the vendor's tool, ``version_command`` and SQL Server's ``sqlcmd``
    out on the host (``module_utils/schema/command.py``)."""

    NO_LIMIT = 7 * 24 * 3600  # command_timeout 0: no limit of our own (the script's timeout is an int of milliseconds)

    def host_run(self, argv, timeout, cwd=None):
        """``(rc, stdout, stderr, timed_out)`` of ``argv`` run on the host, killed with its children after ``timeout``
        seconds (0: no limit); OSError in words when it cannot be started there."""
        try:
            out = self.host.run_program(argv, cwd=cwd, timeout=timeout or self.NO_LIMIT)
        except StepFailed as exc:
            raise OSError(exc.msg) from None
        return out['rc'], out['stdout'], out['stderr'], out['timed_out']


class HostJournal(_journal.Journal):
    """The journal and the upgrade lock as files on the Windows host: read once with slurp (this run holds the lock, no
    one else writes them), then each entry written by rewriting the file through a temporary file (script ``write``)."""

    def __init__(self, host, path, target, run_id, lock_file=None):  # pylint: disable=super-init-not-called
        self.host = host
        self.path = path
        self.target = target
        self.run_id = run_id
        self.lock_file = lock_file or os.path.join(os.path.dirname(path), 'upgrade.lock')
        self.raw = host.read_bytes(path) or b''
        self.holder = None
        self.entries = []
        for line in self.raw.decode('utf-8', 'replace').splitlines():
            try:
                self.entries.append(json.loads(line)) if line.strip() else None
            except ValueError:
                continue  # a line cut by a crash: the step counts as not done
        self.attempt = _journal.attempt_state(self.entries, target)

    def read_holder(self):
        if self.holder is None:
            raw = self.host.read_bytes(self.lock_file)
            try:
                self.holder = {} if raw is None else json.loads(raw.decode('utf-8'))
            except ValueError:
                self.holder = {'corrupt': True}
        return self.holder

    def record(self, step, result, data=None, note=None):
        entry = _journal.make_entry(self.attempt, step, result, self.target, self.run_id, data, note)
        if self.raw and not self.raw.endswith(b'\n'):
            self.raw += b'\n'
        self.raw += (json.dumps(entry, sort_keys=True, ensure_ascii=False) + '\n').encode('utf-8')
        self.host.write_atomic(self.path, self.raw)
        if self.read_holder().get('run_id') == self.run_id:  # the heartbeat of this run's lock
            self.holder = dict(run_id=self.run_id, pid=_journal.controller_pid(), boot_id=None, host=socket.gethostname(),
                               acquired=self.holder.get('acquired') or _journal.now_iso(), heartbeat_epoch=time.time())
            self.host.write_atomic(self.lock_file, json.dumps(self.holder).encode('utf-8'))
        self.entries.append(entry)
        self.attempt = _journal.attempt_state(self.entries, self.target)
        return entry

    def release_lock(self):
        if self.read_holder().get('run_id') == self.run_id:
            self.host.remove_tree(self.lock_file)
            self.holder = {}
            return True
        return False


class WindowsHost:
    """The host operations of the engine, each carried out with ansible.windows modules from the controller."""

    remote = True  # the engine runs its command checks through run(), on the host

    def __init__(self, action, task_vars):
        self.action = action
        self.task_vars = task_vars
        self.module = None  # the engine's module (the action plugin sets it): check mode, warnings, no_log values
        self.calls = []  # (module, args) of every call, for the journal of what was done and for the tests
        self.stats = {}  # path -> win_stat, forgotten by every call that may change a file (one round trip less per ask)

    # -- module calls -----------------------------------------------------------------------------------------------
    def call(self, name, args):
        self.calls.append((name, args))
        if name not in READ_ONLY:
            self.stats.clear()
        return self.action._execute_module(module_name=name, module_args=args, task_vars=self.task_vars)  # pylint: disable=protected-access

    def must(self, name, args, what):
        res = self.call(name, args)
        if res.get('failed'):
            raise StepFailed('%s: %s failed: %s' % (what, name, res.get('msg') or res.get('stderr') or res))
        return res

    def script(self, name, what, **parameters):
        """Run one of SCRIPTS with ``parameters``; its output object (a dict). In check mode only a read-only script
        runs (win_powershell would skip any other, leaving no output to act on)."""
        if name not in READ_ONLY_SCRIPTS and getattr(getattr(self.action, '_task', None), 'check_mode', False):
            raise StepFailed('%s: not done in check mode (script %s changes the host)' % (what, name))
        res = self.must('ansible.windows.win_powershell', dict(script=SCRIPTS[name], parameters=parameters), what)
        errors = res.get('error') or []
        if errors:
            raise StepFailed('%s: %s' % (what, '; '.join(str(e.get('message') if isinstance(e, dict) else e) for e in errors)))
        output = res.get('output') or [{}]
        return output[-1] if isinstance(output[-1], dict) else {}

    # -- files ----------------------------------------------------------------------------------------------------
    @staticmethod
    def isabs(path):
        return is_windows_abs(path)

    def stat(self, path):
        key = native(path.rstrip('/\\') or path)
        if key not in self.stats:
            res = self.must('ansible.windows.win_stat', dict(path=key, follow=False, get_checksum=False), 'stat %s' % path)
            self.stats[key] = res.get('stat') or {}
        return self.stats[key]

    def exists(self, path):
        return bool(self.stat(path).get('exists'))

    def isdir(self, path):
        found = self.stat(path)
        if found.get('islnk') or found.get('isjunction'):
            return bool(found.get('lnk_source')) and self.isdir(found['lnk_source'])
        return bool(found.get('exists') and found.get('isdir'))

    def isfile(self, path):
        found = self.stat(path)
        return bool(found.get('exists') and not found.get('isdir'))

    def islink(self, path):
        found = self.stat(path)
        return bool(found.get('islnk') or found.get('isjunction'))

    def readlink(self, path):
        found = self.stat(path)
        return found.get('lnk_target') or found.get('lnk_source') or ''

    def realpath(self, path):
        """Where ``path`` leads, every component resolved: ``..`` dropped first (as Windows does), then each component
        asked about with ``win_stat`` (``follow: false``, remembered), a symlink or junction replaced by its
        ``lnk_source`` and the rest walked on from there; the components after the first missing one are kept as they
        are. Paths use ``/``."""
        root, parts = _split_root(path)
        if root is None:
            return path.rstrip('/\\') or path
        current, hops, todo = root, 0, _lexical(parts)  # Windows drops '..' from a path before it looks at links
        while todo:
            part = todo.pop(0)
            if part == '..':
                current = _parent(current, root)
                continue
            candidate = current.rstrip('/') + '/' + part
            found = self.stat(candidate)
            if not found.get('exists'):
                current = '/'.join([candidate.rstrip('/')] + todo)
                break
            target = found.get('lnk_source') if found.get('islnk') or found.get('isjunction') else None
            if not target:
                current = candidate
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise StepFailed('cannot resolve %s: more than %d links (a loop?)' % (path, MAX_LINK_HOPS))
            new_root, new_parts = _split_root(str(target))
            if new_root is None:  # a relative target: from the link's folder
                new_root, new_parts = current, _split_root('/x/' + str(target))[1][1:]
            current, todo = new_root, new_parts + todo
        return current

    def listdir(self, path):
        args = dict(paths=[native(path)], file_type='any', hidden=True, recurse=False, get_checksum=False)
        res = self.must('ansible.windows.win_find', args, 'list %s' % path)
        return [f.get('filename') for f in res.get('files') or []]

    def read_bytes(self, path):
        res = self.call('ansible.windows.slurp', dict(src=native(path)))
        if res.get('failed'):
            return None
        return base64.b64decode(res.get('content') or '')

    def read_text(self, path):
        raw = self.read_bytes(path)
        try:
            return None if raw is None else raw.decode('utf-8')
        except UnicodeDecodeError:
            return None

    def write_atomic(self, path, content, mode=0o644):
        """Write ``content`` (text as UTF-8, or bytes as they are) through a temporary file renamed over ``path``.
        Windows has no POSIX mode bits: ``mode`` is not applied (the folder's ACL is inherited)."""
        del mode
        data = content.encode('utf-8') if isinstance(content, str) else bytes(content)
        self.script('write', 'write %s' % path, Path=native(path), Content=base64.b64encode(data).decode('ascii'))

    def rename(self, src, dst):
        out = self.script('rename', 'rename %s to %s' % (src, dst), Source=native(src.rstrip('/\\')),
                          Destination=native(dst.rstrip('/\\')), Retries=RENAME_RETRIES, DelayMs=RENAME_DELAY_MS)
        if not out.get('renamed'):
            held = (' - %s is held open by a process' % out['locked']) if out.get('locked') else ''
            raise StepFailed('cannot rename %s to %s after %s attempts%s: %s' % (
                src, dst, out.get('attempts'), held, out.get('message') or 'no reason given'))

    def makedirs(self, path, mode=0o750):
        del mode
        self.must('ansible.windows.win_file', dict(path=native(path), state='directory'), 'create %s' % path)

    def copy_tree(self, src, dst):
        self.script('copy_tree', 'copy %s to %s' % (src, dst), Source=native(src), Destination=native(dst))

    def remove_tree(self, path):
        """Remove ``path``; a link or junction is removed itself (win_file deletes the reparse point, not its target)."""
        if self.exists(path):
            self.must('ansible.windows.win_file', dict(path=native(path.rstrip('/\\')), state='absent'), 'remove %s' % path)

    def unpack(self, archive, dest, only=None):
        """A release zip unpacked into ``dest``; every member checked here first (absolute, ``..``, a drive, an
        alternate data stream, a name that leaves ``dest``): one bad member and nothing is written."""
        names = self.script('zip_list', 'read %s' % archive, Archive=native(archive)).get('names') or []
        prefix = only.strip('/') + '/' if only else None
        wanted = [n for n in names if prefix is None or n.replace('\\', '/') == prefix.rstrip('/')
                  or n.replace('\\', '/').startswith(prefix)]
        bad = ['%s: a Windows drive or stream name' % n for n in wanted if ':' in n]
        bad += _paths.archive_escapes([(n.replace('\\', '/'), 'dir' if n.endswith(('/', '\\')) else 'file', '') for n in wanted])
        if bad:
            raise StepFailed('%s has members that would leave the staging folder, nothing was unpacked: %s'
                             % (archive, '; '.join(bad[:5])))
        self.script('zip_extract', 'unpack %s' % archive, Archive=native(archive), Destination=native(dest), Names=wanted)
        return len(wanted)

    # -- modules, services, commands ------------------------------------------------------------------------------
    def validate(self, name, params):
        if name == 'service_stop_ordered':
            from ansible_collections.clinops.upgrade.plugins.module_utils.service.spec import (  # pylint: disable=import-outside-toplevel
                MUTUALLY_EXCLUSIVE, argument_spec, check_params)
            dummy, checked = _ServiceAction(self, self._service_params(params)).validate_argument_spec(
                argument_spec=argument_spec(), mutually_exclusive=MUTUALLY_EXCLUSIVE)
            errors = check_params(checked, windows=True)
            if errors:
                raise StepFailed('invalid service_stop_ordered options, nothing was done: %s' % '; '.join(errors))
        elif name == 'prefs_migrate':
            from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import prefs_argument_spec  # pylint: disable=import-outside-toplevel
            checked = ArgumentSpecValidator(prefs_argument_spec()).validate(dict((k, v) for k, v in params.items() if v is not None))
            if checked.error_messages:
                raise StepFailed('invalid prefs_migrate options, nothing was done: %s' % '; '.join(checked.error_messages))
        elif name == 'schema_update':
            self._schema_checked(params)
        elif name == 'db_backup':
            from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as _db_backup  # pylint: disable=import-outside-toplevel
            from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError  # pylint: disable=import-outside-toplevel
            kwargs = _db_backup.module_kwargs()
            checked = ArgumentSpecValidator(kwargs['argument_spec']).validate(dict((k, v) for k, v in params.items() if v is not None))
            if checked.error_messages:
                raise StepFailed('invalid db_backup options, nothing was done: %s' % '; '.join(checked.error_messages))
            try:
                _db_backup.check_remote(checked.validated_parameters)
                _db_backup.validate_options(checked.validated_parameters)
            except BackupError as exc:
                raise StepFailed('db_backup on a Windows host: %s' % exc) from None
            if params['engine'] == 'firebird':  # the program is looked for before anything stops (one win_stat)
                gbak = params['bin_dir'].rstrip('/\\') + '/gbak.exe'
                if not self.isfile(gbak):
                    raise StepFailed('db_backup on a Windows host: gbak.exe (needed to back up and restore Firebird) is not'
                                     ' in bin_dir %s on the host' % params['bin_dir'])
        else:
            raise StepFailed('%s is not carried out on Windows hosts by this release (the step needs Python on the host); '
                             'leave its option out for a Windows host' % name)

    @staticmethod
    def _schema_checked(params):
        """schema_update's options validated; on a Windows host its command mode only (the vendor's tool, with
        ``version_command`` or SQL Server's ``version_query``), with Windows authentication."""
        from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as _schema  # pylint: disable=import-outside-toplevel
        kwargs = _schema.module_kwargs()
        checked = ArgumentSpecValidator(kwargs['argument_spec'], mutually_exclusive=kwargs['mutually_exclusive'],
                                        required_one_of=kwargs['required_one_of']).validate(
            dict((k, v) for k, v in params.items() if v is not None))
        if checked.error_messages:
            raise StepFailed('invalid schema_update options, nothing was done: %s' % '; '.join(checked.error_messages))
        checked = checked.validated_parameters
        if checked.get('migrations') is not None:
            raise StepFailed('schema_update with migrations (SQL files) is not carried out on Windows hosts by this release: it'
                             ' applies them through a Python database driver where the module runs; on a Windows host the'
                             " vendor's tool runs them (migrate.command with version_command, or version_query for engine"
                             ' mssql)')
        if checked.get('version_query') is not None and checked['engine'] != 'mssql':
            raise StepFailed('schema_update on a Windows host: version_query with engine %s needs a Python driver where'
                             ' the module runs; use version_command, or engine mssql (sqlcmd on the host)' % checked['engine'])
        if checked.get('login_password') is not None:
            raise StepFailed('schema_update on a Windows host: sqlcmd there uses Windows authentication (the account the'
                             ' task runs as); leave login_user and login_password out')
        return checked

    @staticmethod
    def _service_params(params):
        """The Windows path addresses services by their service name: ``backend`` and ``supervisor_config`` are POSIX
        ones, and a DICOM service's start is waited for on its port (the C-ECHO of the verify step, from the controller,
        judges it) instead of ``dicom``."""
        params = dict(params)
        params['services'] = [dict((k, v) for k, v in s.items() if k not in ('backend', 'dicom'))
                              for s in params.get('services') or []]
        params.pop('supervisor_config', None)
        return params

    def run_module(self, name, params):
        if name == 'service_stop_ordered':
            return self._services(params)
        if name == 'prefs_migrate':
            return self._prefs(params)
        if name == 'db_backup':
            return self._db_backup(params)
        if name == 'schema_update':
            return self._schema_update(params)
        self.validate(name, params)  # raises: not on Windows
        return {}

    def services(self, state, services, supervisor_config=None, only=None, drain=None):
        del supervisor_config
        return self._services(dict(services=services, state=state, only=only or None, drain=drain))

    def with_dependents(self, params):
        """The services with, before each, the services that depend on it (``win_service_info``'s ``dependency_of``,
        theirs too): stopped first, started after it, with its timeout. ``sc.exe stop`` refuses a service whose
        dependents run; the vendor's list need not name them."""
        listed = set(s['name'].lower() for s in params.get('services') or [])
        ordered = []

        def add(svc, depth):
            if depth < 8:
                found = self.call('ansible.windows.win_service_info', {'name': svc['name']})
                for entry in found.get('services') or []:
                    if str(entry.get('name', '')).lower() != svc['name'].lower():
                        continue
                    for dependent in entry.get('dependency_of') or []:
                        if dependent.lower() not in listed:
                            listed.add(dependent.lower())
                            inherited = dict((k, svc[k]) for k in ('timeout', 'kill_after') if svc.get(k) is not None)
                            add(dict(inherited, name=dependent), depth + 1)
            ordered.append(svc)
        for svc in params.get('services') or []:
            add(dict(svc), 0)
        return dict(params, services=ordered)

    def _services(self, params):
        from ansible_collections.clinops.upgrade.plugins.action.service_stop_ordered import WindowsRun  # pylint: disable=import-outside-toplevel
        shim = _ServiceAction(self, self.with_dependents(self._service_params(params)))
        result = WindowsRun(shim, self.task_vars).run()
        if result.get('failed'):
            raise StepFailed(result.get('msg') or 'service_stop_ordered failed', result)
        return result

    def _prefs(self, params):
        from ansible_collections.clinops.upgrade.plugins.action.prefs_migrate import WindowsMigration  # pylint: disable=import-outside-toplevel
        from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import (  # pylint: disable=import-outside-toplevel
            PrefsError, prefs_argument_spec)
        checked = ArgumentSpecValidator(prefs_argument_spec()).validate(dict((k, v) for k, v in params.items() if v is not None))
        if checked.error_messages:
            raise StepFailed('invalid prefs_migrate options, nothing was done: %s' % '; '.join(checked.error_messages))
        try:
            migration = WindowsMigration(self.action, checked.validated_parameters, self.task_vars)
            migration.plan()
            migration.run()
        except PrefsError as exc:
            raise StepFailed('prefs_migrate: %s' % exc) from exc
        if migration.result.get('failed'):
            raise StepFailed(migration.result.get('msg') or 'prefs_migrate failed', migration.result)
        return migration.result

    def _db_backup(self, params):
        """db_backup's one implementation (``module_utils/backup``), run here with the host's files and programs
        reached through :class:`WindowsBackupIO`; the engines that need more than that are refused by validate()."""
        from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as _db_backup  # pylint: disable=import-outside-toplevel
        self.validate('db_backup', params)
        return _run_module(_BackupParent(self), 'db_backup', _db_backup, params)

    def _schema_update(self, params):
        """schema_update's one implementation (``module_utils/schema``), run here with its programs run on the host
        (:class:`_SchemaParent`); what cannot run there is refused by validate()."""
        from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as _schema  # pylint: disable=import-outside-toplevel
        self._schema_checked(params)
        return _run_module(_SchemaParent(self), 'schema_update', _schema, params)

    def run_program(self, argv, cwd=None, timeout=60.0):
        """dict(rc, stdout, stderr, timed_out) of ``argv`` run on the host (script ``run``), killed with its children
        after ``timeout`` seconds; StepFailed when it cannot be started."""
        out = self.script('run', 'run %s' % argv[0], Argv=[str(a) for a in argv], Chdir=native(cwd or ''),
                          TimeoutMs=int(timeout * 1000))
        return dict(rc=out.get('rc'), stdout=out.get('stdout') or '', stderr=out.get('stderr') or '',
                    timed_out=bool(out.get('timed_out')))

    def run(self, argv, cwd=None, timeout=60.0):
        out = self.run_program(argv, cwd=cwd, timeout=timeout)
        if out['timed_out']:
            raise StepFailed('%s gave no answer within %.0fs' % (argv[0], timeout))
        return dict(rc=out['rc'], stdout=out['stdout'], stderr=out['stderr'])

    def free_space(self, path):
        return int(self.script('free_space', 'free space of %s' % path, Path=native(path)).get('free') or 0)

    def clock(self):
        out = self.script('clock', "the host's clock")
        return dict(utc=out.get('utc'), epoch=float(out.get('epoch') or 0), timezone=out.get('timezone'))

    def journal(self, path, target, run_id):
        return HostJournal(self, path, target, run_id)
