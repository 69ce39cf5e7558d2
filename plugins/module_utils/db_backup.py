# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``db_backup`` module: its option checks, engines and whole run, for the module and for in-process callers.

``module_kwargs()`` gives the keyword arguments of ``AnsibleModule`` and ``run(module)`` is the module's whole
behaviour, ending in ``module.exit_json`` or ``module.fail_json``; ``plugins/modules/db_backup.py`` is only its
documentation and ``run(AnsibleModule(**module_kwargs()))``.  Another module can run a backup or restore inside
its own process by calling ``run`` with an ``AnsibleModule``-like object (see ``run`` for what it uses).

The pure helpers (names, retention, manifests, option files, SQL Server statements) are plain functions
that the unit tests call directly.  The engines run the database's own client programs.  Dumps are
streamed: the client writes to a pipe, optionally through ``gzip``/``zstd``, and the module hashes each
chunk as it writes it to a temporary file, so the checksum costs no second read of the file.
``subprocess.Popen`` is used instead of ``run_command`` because ``run_command`` buffers the whole output
in memory, and a dump can be larger than the memory of the host.
"""

from __future__ import annotations

import datetime
import errno
import grp
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.parse

from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DEFAULT_PORTS,
    ENGINES,
    DatabaseError,
    check_connection_params,
    connect,
    database_argument_spec,
    database_size,
    describe_error,
    firebird_dsn,
    quote_identifier,
    require_driver,
    server_version,
    table_row_counts,
)

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = '.manifest.json'
CHUNK = 1024 * 1024
DEFAULT_FORMAT = {'postgresql': 'custom', 'mysql': 'sql', 'sqlite': 'sqlite', 'firebird': 'gbak', 'files': 'tar',
                  'mssql': 'bak'}
FORMATS = {'postgresql': ('custom', 'directory'), 'mysql': ('sql',), 'sqlite': ('sqlite',), 'firebird': ('gbak',),
           'files': ('tar',), 'mssql': ('bak',)}
ALL_FORMATS = ('custom', 'directory', 'sql', 'sqlite', 'gbak', 'tar', 'bak')
EXTENSIONS = {'custom': '.dump', 'directory': '.dir', 'sql': '.sql', 'sqlite': '.sqlite', 'gbak': '.fbk',
              'tar': '.tar', 'bak': '.bak'}
COMPRESSION_SUFFIX = {'none': '', 'gzip': '.gz', 'zstd': '.zst'}
COMPRESSORS = {'gzip': ('gzip', ['-c'], ['-dc']), 'zstd': ('zstd', ['-q', '-c', '-T0'], ['-q', '-dc'])}
NAME_FIELDS = ('engine', 'database', 'label', 'timestamp')
TIMESTAMP_FORMAT = '%Y%m%dT%H%M%SZ'


class BackupError(Exception):
    """A step failed; the message names the cause in words (never a password)."""


# ----------------------------------------------------------------------------------------------
# pure helpers

def resolve_format(engine, fmt):
    """The effective format for ``engine``; raise BackupError for a format of another engine."""
    if fmt is None:
        return DEFAULT_FORMAT[engine]
    if fmt not in FORMATS[engine]:
        raise BackupError('format %s does not apply to engine %s (choose from: %s)' % (
            fmt, engine, ', '.join(FORMATS[engine])))
    return fmt


def resolve_compression(engine, fmt, compression):
    """The effective compression; PostgreSQL defaults to gzip (what ``pg_dump -Fc`` does), others to none."""
    if compression is None:
        return 'gzip' if engine == 'postgresql' else 'none'
    if engine == 'mssql' and compression == 'zstd':
        raise BackupError('engine mssql compresses with SQL Server\'s own backup compression: use compression gzip or none')
    if engine == 'sqlite' and fmt == 'sqlite' and compression not in COMPRESSION_SUFFIX:
        raise BackupError('unknown compression %s' % compression)
    return compression


def external_compression(engine, fmt, compression):
    """The compressor program the dump is piped through, or None when the engine compresses itself."""
    if compression == 'none' or engine == 'mssql':
        return None
    if engine == 'postgresql' and (compression == 'gzip' or fmt == 'directory'):
        return None
    return compression


def backup_extension(engine, fmt, compression):
    ext = EXTENSIONS[fmt]
    if external_compression(engine, fmt, compression):
        ext += COMPRESSION_SUFFIX[compression]
    return ext


def safe_component(value):
    """A value made safe for a file name: anything but letters, digits, ``.``, ``_`` and ``-`` becomes ``_``."""
    return re.sub(r'[^A-Za-z0-9._-]', '_', str(value)).strip('.') or '_'


def render_name(template, engine, database, label, timestamp, extension):
    """Render the backup file name from ``template`` (``{engine}``, ``{database}``, ``{label}``, ``{timestamp}``).

    An empty label drops ``{label}`` together with the separator before it.  The extension is appended
    unless the template already ends with it.
    """
    if template is None:
        template = '{engine}_{database}_{label}_{timestamp}'
    for field in re.findall(r'{([^{}]*)}', template):
        if field not in NAME_FIELDS:
            raise BackupError('name template %r uses the unknown field {%s} (known: %s)' % (
                template, field, ', '.join('{%s}' % f for f in NAME_FIELDS)))
    if '{timestamp}' not in template and '{label}' not in template:
        raise BackupError('name template %r needs {timestamp} or {label}, or every backup would get the same name' % template)
    if not label:
        template = re.sub(r'[-_.]?{label}', '', template)
    try:
        name = template.format(engine=engine, database=safe_component(database),
                               label=safe_component(label) if label else '', timestamp=timestamp)
    except (ValueError, IndexError, KeyError) as exc:
        raise BackupError('name template %r cannot be rendered: %s' % (template, exc)) from exc
    if not name or '/' in name or name.startswith('.') or name in ('.', '..'):
        raise BackupError('name template %r renders %r, which is not a plain file name (no /, no leading dot)' % (template, name))
    if not name.endswith(extension):
        name += extension
    return name


def utc_now():
    """The current UTC time, to the microsecond: the one clock of backup names and manifests."""
    return datetime.datetime.now(datetime.timezone.utc)


def utc_timestamp(now=None):
    now = now or utc_now()
    return now.strftime(TIMESTAMP_FORMAT)


def iso_now(now=None):
    """``now`` (default: the current time) in UTC as ISO 8601 to the second, the manifest's ``created_at``."""
    now = now or utc_now()
    return now.astimezone(datetime.timezone.utc).replace(microsecond=0).isoformat()


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def epoch_ns(when):
    """Nanoseconds since the Unix epoch of a datetime (a naive one is taken as UTC), in exact integer arithmetic."""
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    delta = when - _EPOCH
    return ((delta.days * 86400 + delta.seconds) * 1000000 + delta.microseconds) * 1000


def manifest_created_ns(manifest):
    """When the backup of ``manifest`` was taken, in nanoseconds since the epoch, or None when it does not say.

    Manifests written since ``created_ns`` exists carry it (sub-second precision); older ones only have
    ``created_at`` (ISO 8601, to the second), which is read instead.  A date alone counts as its midnight UTC.
    """
    value = manifest.get('created_ns')
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = manifest.get('created_at')
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    if text[-1:] in ('Z', 'z'):  # fromisoformat reads a "Z" only from Python 3.11 on
        text = text[:-1] + '+00:00'
    try:
        return epoch_ns(datetime.datetime.fromisoformat(text))
    except ValueError:
        return None


_KNOWN_EXTENSIONS = sorted(set(ext + suffix for ext in EXTENSIONS.values() for suffix in COMPRESSION_SUFFIX.values()),
                           key=len, reverse=True)


def name_counter(file_name):
    """``(base, n)`` of a backup file name: ``x_TS-3.dump`` gives ``('x_TS', 3)``, ``x_TS.dump`` gives ``('x_TS', 1)``.

    ``present`` adds ``-2``, ``-3``, ... before the extension when the rendered name is taken, so among names
    of one base a higher ``n`` was written later.  Comparing ``(base, n)`` also orders a base that itself ends
    in ``-<digits>`` right: ``v-3.dump`` gives ``('v', 3)``, which sorts before ``('v-3', 2)`` of ``v-3-2.dump``.
    """
    stem = file_name
    for ext in _KNOWN_EXTENSIONS:
        if file_name.endswith(ext) and len(file_name) > len(ext):
            stem = file_name[:-len(ext)]
            break
    match = re.match(r'^(.+)-([0-9]+)$', stem)
    if match:
        return match.group(1), int(match.group(2))
    return stem, 1


def manifest_order_key(manifest):
    """The sort key of "newest": ascending key means older, so sort with ``reverse=True`` for newest first.

    The manifest's own creation time (``created_ns``, else ``created_at``; a manifest without either is the
    oldest), then the name's numeric suffix (``-2`` after none, ``-10`` after ``-9``: two backups of the same
    second), then the path, so that the order never depends on the order of the list.
    """
    created = manifest_created_ns(manifest)
    name = manifest.get('file') or os.path.basename(manifest['backup_path'].rstrip('/'))
    base, counter = name_counter(name)
    return (created is not None, created or 0, base, counter, manifest['backup_path'])


def newest_first(manifests):
    """``manifests`` as a new list, newest first (by ``manifest_order_key``)."""
    return sorted(manifests, key=manifest_order_key, reverse=True)


def select_for_retention(manifests, keep, protect):
    """The manifests to delete so that the newest ``keep`` (``protect`` among them) remain.

    ``manifests`` are dicts with ``backup_path`` and ``created_ns``/``created_at``; ``protect`` is the backup
    path just written, never returned.  Ordering is that of ``manifest_order_key``, newest first.
    """
    if keep is None:
        return []
    others = newest_first(m for m in manifests if m['backup_path'] != protect)
    return others[max(keep - 1, 0):]


def compare_row_counts(expected, actual):
    """Differences between two ``{table: rows}`` maps, as sentences (empty when they agree)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        if table not in actual:
            problems.append('table %s is missing from the restored copy' % table)
        elif table not in expected:
            problems.append('table %s is in the restored copy but not in the source' % table)
        elif expected[table] != actual[table]:
            problems.append('table %s has %d rows in the restored copy, %d in the source' % (
                table, actual[table], expected[table]))
    return problems


def build_manifest(engine, database, source, label, fmt, compression, file_name, size, sha256, server_ver,
                   tool_versions, database_bytes, created_at, checksum_method, files=None, row_counts=None,
                   extra=None, created_ns=None):
    """The manifest of a new backup; ``created_ns`` (nanoseconds since the epoch) orders backups of one second."""
    manifest = dict(
        manifest_version=MANIFEST_VERSION,
        engine=engine,
        database=database,
        source=source,
        label=label,
        format=fmt,
        compression=compression,
        file=file_name,
        size=size,
        sha256=sha256,
        checksum_method=checksum_method,
        server_version=server_ver,
        tool_versions=tool_versions,
        database_size=database_bytes,
        created_at=created_at,
        verification=None,
    )
    if created_ns is not None:
        manifest['created_ns'] = created_ns
    if files is not None:
        manifest['files'] = files
    if row_counts is not None:
        manifest['row_counts'] = row_counts
    if extra:
        manifest.update(extra)
    return manifest


def manifest_path(backup_path):
    return backup_path + MANIFEST_SUFFIX


def load_manifests(dest):
    """Every readable manifest in ``dest`` (temporary dot-files ignored), each with ``backup_path`` set."""
    found = []
    try:
        names = sorted(os.listdir(dest))
    except OSError:
        return found
    for name in names:
        if name.startswith('.') or not name.endswith(MANIFEST_SUFFIX):
            continue
        path = os.path.join(dest, name)
        try:
            with open(path, encoding='utf-8') as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get('manifest_version') != MANIFEST_VERSION or not data.get('file'):
            continue
        if data['file'] + MANIFEST_SUFFIX != name:
            continue
        data['backup_path'] = os.path.join(dest, data['file'])
        data['manifest_path'] = path
        found.append(data)
    return found


def matching_manifests(manifests, engine, source, label=None, fmt=None, compression=None, label_required=False):
    """Manifests of the same source (and label/format/compression when given), newest first (``manifest_order_key``)."""
    out = []
    for man in manifests:
        if man.get('engine') != engine or man.get('source') != source:
            continue
        if label_required and man.get('label') != label:
            continue
        if fmt is not None and man.get('format') != fmt:
            continue
        if compression is not None and man.get('compression') != compression:
            continue
        out.append(man)
    return newest_first(out)


def pgpass_line(password):
    """A ``.pgpass`` line matching any host, port, database and user, with ``\\`` and ``:`` escaped."""
    if '\n' in password or '\r' in password:
        raise BackupError('login_password contains a line break, which a password file cannot hold')
    return '*:*:*:*:%s\n' % password.replace('\\', '\\\\').replace(':', '\\:')


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


def pg_conninfo(dbname):
    """A libpq conninfo string naming only the database (a name holding ``=`` is not mistaken for one)."""
    return "dbname='%s'" % dbname.replace('\\', '\\\\').replace("'", "\\'")


def mssql_literal(value):
    return "N'%s'" % value.replace("'", "''")


def mssql_backup_statement(database, path, compression, label=None):
    """``BACKUP DATABASE`` for a copy-only full backup with page checksums (the backup chain is untouched)."""
    options = ['COPY_ONLY', 'CHECKSUM', 'FORMAT', 'INIT', 'COMPRESSION' if compression == 'gzip' else 'NO_COMPRESSION']
    if label:
        options.append('NAME = %s' % mssql_literal(label[:128]))
    return 'BACKUP DATABASE %s TO DISK = %s WITH %s' % (
        quote_identifier('mssql', database), mssql_literal(path), ', '.join(options))


def mssql_verify_statement(path):
    return 'RESTORE VERIFYONLY FROM DISK = %s WITH CHECKSUM' % mssql_literal(path)


def mssql_filelist_statement(path):
    return 'RESTORE FILELISTONLY FROM DISK = %s' % mssql_literal(path)


def mssql_restore_statement(database, path, moves=None):
    """``RESTORE DATABASE`` with checksums; ``moves`` maps logical file names to new physical paths."""
    options = ['CHECKSUM', 'REPLACE', 'RECOVERY']
    for logical, physical in sorted((moves or {}).items()):
        options.append('MOVE %s TO %s' % (mssql_literal(logical), mssql_literal(physical)))
    return 'RESTORE DATABASE %s FROM DISK = %s WITH %s' % (
        quote_identifier('mssql', database), mssql_literal(path), ', '.join(options))


def mssql_moves(filelist, target):
    """New physical paths for a restore under ``target``: ``[(logical, physical)]`` from FILELISTONLY."""
    moves = {}
    for index, (logical, physical) in enumerate(filelist):
        sep = '\\' if '\\' in physical else '/'
        folder = physical.rsplit(sep, 1)[0] if sep in physical else ''
        ext = os.path.splitext(physical.replace('\\', '/'))[1] or '.mdf'
        name = '%s_%d%s' % (safe_component(target), index, ext)
        moves[logical] = folder + sep + name if folder else name
    return moves


def mssql_drop_statement(database):
    ident = quote_identifier('mssql', database)
    return "IF DB_ID(%s) IS NOT NULL BEGIN ALTER DATABASE %s SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE %s; END" % (
        mssql_literal(database), ident, ident)


def mssql_row_count_query():
    return ("SET NOCOUNT ON; SELECT s.name + '.' + t.name + '|' + CAST(SUM(p.rows) AS varchar(20)) FROM sys.tables t"
            " JOIN sys.schemas s ON s.schema_id = t.schema_id JOIN sys.partitions p ON p.object_id = t.object_id"
            " AND p.index_id IN (0, 1) WHERE t.is_ms_shipped = 0 GROUP BY s.name, t.name")


def mssql_size_query(database):
    return ('SET NOCOUNT ON; SELECT CAST(SUM(CAST(size AS bigint)) * 8192 AS varchar(30)) FROM sys.master_files'
            ' WHERE database_id = DB_ID(%s)' % mssql_literal(database))


def scratch_name(base, purpose='verify'):
    """A fresh database name for a test restore, at most 63 characters (PostgreSQL's limit)."""
    return '%s_%s_%s' % (safe_component(base)[:40], purpose, secrets.token_hex(4))


def mode_for_directory(mode):
    """A file mode turned into a folder mode: execute where read is granted (0600 -> 0700)."""
    return mode | ((mode & 0o444) >> 2)


def first_line(text):
    for line in (text or '').splitlines():
        line = line.strip(' *')
        if line:
            return line
    return ''


def tail(text, limit=1500):
    text = (text or '').strip()
    return text if len(text) <= limit else '...' + text[-limit:]


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


def check_checksum(manifest, path):
    """None when ``path`` still matches the manifest's sha256 (every file for a folder), else a sentence."""
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


# ----------------------------------------------------------------------------------------------
# engines

class Engine:
    """One database engine: probe, dump to a stream, verify, restore into a scratch copy, swap it in."""

    engine = None
    programs = ()
    error_patterns = ()

    def __init__(self, module, params, fmt, compression, secret_parent=None):
        self.module = module
        self.params = params
        self.fmt = fmt
        self.compression = compression
        self.compressor = external_compression(params['engine'], fmt, compression)
        self.secret_parent = secret_parent
        self.secrets = None
        self.bins = {}
        self.warnings = []

    # -- programs -------------------------------------------------------------------------------
    def find_program(self, names, purpose, client=True):
        """The first of ``names`` found (only in ``bin_dir`` when set, for client programs)."""
        bin_dir = self.params.get('bin_dir') if client else None
        for name in names:
            if bin_dir:
                candidate = os.path.join(bin_dir, name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
            else:
                found = self.module.get_bin_path(name)
                if found:
                    return found
        where = 'in bin_dir %s' % bin_dir if bin_dir else 'in PATH'
        raise BackupError('client program %s (needed to %s) was not found %s' % (' or '.join(names), purpose, where))

    def resolve_programs(self):
        for key, names, purpose in self.programs:
            self.bins[key] = self.find_program(names, purpose)
        if self.compressor:
            self.bins[self.compressor] = self.find_program([COMPRESSORS[self.compressor][0]],
                                                           'compress with %s' % self.compressor, client=False)

    def tool_versions(self):
        versions = {}
        for key, path in sorted(self.bins.items()):
            args = [path, '-z'] if key.startswith('gbak') else [path, '--version']
            rc, out, err = self.module.run_command(args)
            versions[os.path.basename(path)] = first_line(out) or first_line(err) or 'unknown (exit %s)' % rc
        return versions

    def compress_cmd(self):
        name, args, _dec = COMPRESSORS[self.compressor]
        return [self.bins[self.compressor]] + args

    def decompress_cmds(self, compression=None):
        compression = compression or self.compression
        comp = external_compression(self.params['engine'], self.fmt, compression)
        if not comp:
            return []
        path = self.bins.get(comp) or self.find_program([COMPRESSORS[comp][0]], 'decompress', client=False)
        return [[path] + COMPRESSORS[comp][2]]

    def secret_files(self):
        if self.secrets is None:
            self.secrets = SecretFiles(self.secret_parent)
        return self.secrets

    def cleanup(self):
        if self.secrets is not None:
            self.secrets.cleanup()
            self.secrets = None

    def env(self):
        env = dict(os.environ)
        env['LC_ALL'] = 'C'
        env['LANG'] = 'C'
        return env

    def run(self, cmds, stdin=None, sink=None, what='the command'):
        results = run_pipeline(cmds, stdin=stdin, sink=sink, env=self.env())
        problem = pipeline_failure(results, self.error_patterns)
        if problem:
            raise BackupError('%s failed: %s' % (what, problem))
        for name, _rc, err in results:
            for line in err.splitlines():
                if re.search(r'warning', line, re.I):
                    self.warnings.append('%s: %s' % (name, line.strip()))
        return results

    # -- the database ---------------------------------------------------------------------------
    def source_id(self):
        return self.params.get('database')

    def connect(self, database=None):
        params = dict(self.params)
        if database is not None:
            params['database'] = database
        try:
            return connect(params, autocommit=True)
        except DatabaseError as exc:
            raise BackupError(str(exc)) from exc

    def probe(self):
        """``(server version, database size in bytes or None)``; fails in words when unreachable."""
        conn = self.connect()
        try:
            return server_version(conn, self.params['engine']), database_size(conn, self.params['engine'])
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('cannot read the size of %s: %s' % (self.source_id(), describe_error(exc))) from exc
        finally:
            conn.close()

    def row_counts(self, database=None):
        conn = self.connect(database)
        try:
            return table_row_counts(conn, self.params['engine'])
        except BackupError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('cannot count the rows of %s: %s' % (database or self.source_id(), describe_error(exc))) from exc
        finally:
            conn.close()

    def restore_target_default(self):
        return self.params.get('database')

    def scratch_hint(self, backup_path):
        """Where (or under which name) a test restore of ``backup_path`` goes."""
        return self.source_id()

    def use_backup_format(self, fmt, compression):
        """Read a backup written with ``fmt``/``compression`` (from its manifest)."""
        self.fmt = fmt
        self.compression = compression
        self.compressor = external_compression(self.params['engine'], fmt, compression)

    # -- subclass API ---------------------------------------------------------------------------
    def dump(self, tmp_path, count_rows=False):
        """Write the backup to ``tmp_path``; return dict(size, sha256, checksum_method, files, row_counts)."""
        raise NotImplementedError

    def quick_check(self, path, manifest):
        """The engine's own check of a backup; return a sentence describing what was checked."""
        raise NotImplementedError

    def restore_scratch(self, path, manifest, target_hint):
        """Restore into a new scratch copy; return its handle (a name or a path)."""
        raise NotImplementedError

    def scratch_counts(self, handle):
        return self.row_counts(handle)

    def drop_scratch(self, handle):
        raise NotImplementedError

    def swap_in(self, handle, target, path, manifest):
        """Make the verified scratch copy ``target`` (replacing what is there)."""
        raise NotImplementedError

    # -- shared dump helpers ----------------------------------------------------------------------
    def stream_to(self, tmp_path, cmds, what):
        cmds = list(cmds)
        if self.compressor:
            cmds.append(self.compress_cmd())
        with open_exclusive(tmp_path) as handle:
            writer = HashingWriter(handle)
            self.run(cmds, sink=writer, what=what)
            os.fsync(handle.fileno())
        return dict(size=writer.size, sha256=writer.hexdigest, checksum_method='stream')

    def open_backup_stream(self, path, manifest):
        """``(stdin handle, decompress commands)`` to read a backup file's uncompressed content."""
        return open(path, 'rb'), self.decompress_cmds(manifest.get('compression'))


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


class _PathEngine(Engine):
    """An engine whose database is a file or folder at ``path``: test restores go beside the backup."""

    def source_id(self):
        return os.path.realpath(self.params['path'])

    def restore_target_default(self):
        return self.params['path']

    def scratch_hint(self, backup_path):
        return backup_path


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


class MssqlEngine(Engine):
    """SQL Server through ``sqlcmd``; the server writes and reads the backup file itself.

    SQL Server cannot run on the machines this collection is tested on: the statements are unit-tested,
    the sqlcmd round trips are not.
    """

    engine = 'mssql'
    programs = (('sqlcmd', ['sqlcmd'], 'run BACKUP DATABASE on SQL Server'),)
    error_patterns = (r'(?m)^Msg \d+, Level (1[1-9]|2\d)',)

    def env(self):
        env = super().env()
        if self.params.get('login_password') is not None:
            env['SQLCMDPASSWORD'] = self.params['login_password']  # sqlcmd's documented way; only this child sees it
        return env

    def sqlcmd(self, statement, database='master'):
        server = 'tcp:%s,%d' % (self.params.get('login_host') or '127.0.0.1', self.params.get('login_port') or DEFAULT_PORTS['mssql'])
        cmd = [self.bins['sqlcmd'], '-S', server, '-d', database, '-b', '-h', '-1', '-W', '-s', '|',
               '-l', str(self.params.get('connect_timeout') or 10), '-Q', statement]
        if self.params.get('login_user'):
            cmd[1:1] = ['-U', self.params['login_user']]
        else:
            cmd[1:1] = ['-E']
        out = TailKeeper(1 << 24)
        self.run([cmd], sink=out, what='sqlcmd (%s)' % ' '.join(statement.split(' ', 2)[0:2]))
        return [line.strip() for line in out.data.decode('utf-8', 'replace').splitlines() if line.strip()]

    def probe(self):
        version = first_line('\n'.join(self.sqlcmd('SET NOCOUNT ON; SELECT CAST(SERVERPROPERTY(\'ProductVersion\') AS varchar(40))')))
        rows = self.sqlcmd(mssql_size_query(self.params['database']))
        size = int(rows[0]) if rows and rows[0].isdigit() else None
        return version, size

    def row_counts(self, database=None):
        counts = {}
        for line in self.sqlcmd(mssql_row_count_query(), database or self.params['database']):
            name, _sep, rows = line.rpartition('|')
            if name and rows.isdigit():
                counts[name] = int(rows)
        return counts

    def dump(self, tmp_path, count_rows=False):
        row_counts = self.row_counts() if count_rows else None
        self.sqlcmd(mssql_backup_statement(self.params['database'], tmp_path, self.compression, self.params.get('label')))
        if not os.path.exists(tmp_path):
            raise BackupError('SQL Server wrote %s on its own host; db_backup must run on the SQL Server host' % tmp_path)
        digest, size = hash_file(tmp_path)
        return dict(size=size, sha256=digest, checksum_method='read once after SQL Server wrote the file', row_counts=row_counts)

    def quick_check(self, path, manifest):
        self.sqlcmd(mssql_verify_statement(path))
        return 'RESTORE VERIFYONLY ... WITH CHECKSUM succeeded'

    def restore_scratch(self, path, manifest, target_hint):
        name = scratch_name(target_hint, 'restoring')
        filelist = []
        for line in self.sqlcmd(mssql_filelist_statement(path)):
            parts = line.split('|')
            if len(parts) > 2:
                filelist.append((parts[0], parts[1]))
        done = False
        try:
            self.sqlcmd(mssql_restore_statement(name, path, mssql_moves(filelist, name)))
            done = True
        finally:
            if not done:
                self.drop_scratch(name)
        return name

    def drop_scratch(self, handle):
        try:
            self.sqlcmd(mssql_drop_statement(handle))
        except BackupError as exc:
            self.warnings.append('could not drop the scratch database %s: %s' % (handle, exc))

    def swap_in(self, handle, target, path, manifest):
        self.drop_scratch(handle)
        self.sqlcmd(mssql_restore_statement(target, path))


ENGINE_CLASSES = {
    'postgresql': PostgresEngine,
    'mysql': MysqlEngine,
    'sqlite': SqliteEngine,
    'firebird': FirebirdEngine,
    'files': FilesEngine,
    'mssql': MssqlEngine,
}


def make_engine(module, params, fmt, compression, secret_parent=None):
    return ENGINE_CLASSES[params['engine']](module, params, fmt, compression, secret_parent)


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


def elapsed(started):
    return round(time.monotonic() - started, 3)


# ----------------------------------------------------------------------------------------------
# file attributes: AnsibleModule.set_mode_if_different, set_owner_if_different and set_group_if_different
# (ansible-core 2.19) in plain Python, for a module object that offers only params, check_mode, fail_json, ...
# The module never sets attributes in check mode, so their check-mode branches are left out.

def set_mode_if_different(module, path, mode):
    """Give ``path`` the octal ``mode`` (an int), without following a symbolic link."""
    b_path = os.path.expanduser(os.path.expandvars(to_bytes(path, errors='surrogate_or_strict')))
    prev_mode = stat.S_IMODE(os.lstat(b_path).st_mode)
    if prev_mode == mode:
        return
    try:
        if hasattr(os, 'lchmod'):
            os.lchmod(b_path, mode)
        elif not os.path.islink(b_path):
            os.chmod(b_path, mode)
        else:
            # set the perms of the link without changing those of the file it points to
            underlying_stat = os.stat(b_path)
            os.chmod(b_path, mode)
            if underlying_stat.st_mode != os.stat(b_path).st_mode:
                os.chmod(b_path, stat.S_IMODE(underlying_stat.st_mode))
    except OSError as exc:
        if os.path.islink(b_path) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            pass
        elif exc.errno in (errno.ENOENT, errno.ELOOP):
            pass
        else:
            raise
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(path=to_text(b_path), msg='chmod failed', details=to_native(exc))
    os.lstat(b_path)  # as AnsibleModule does after the change: a path that vanished fails here


def set_owner_if_different(module, path, owner):
    """Make ``owner`` (a name or a uid) own ``path``, without following a symbolic link."""
    b_path = os.path.expanduser(os.path.expandvars(to_bytes(path, errors='surrogate_or_strict')))
    orig_uid = os.lstat(b_path).st_uid
    try:
        uid = int(owner)
    except ValueError:
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            module.fail_json(path=to_text(b_path), msg='chown failed: failed to look up user %s' % owner)
    if orig_uid != uid:
        try:
            os.lchown(b_path, uid, -1)
        except OSError as exc:
            module.fail_json(path=to_text(b_path), msg='chown failed', exception=exc)


def set_group_if_different(module, path, group):
    """Give ``path`` the group ``group`` (a name or a gid), without following a symbolic link."""
    b_path = os.path.expanduser(os.path.expandvars(to_bytes(path, errors='surrogate_or_strict')))
    orig_gid = os.lstat(b_path).st_gid
    try:
        gid = int(group)
    except ValueError:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            module.fail_json(path=to_text(b_path), msg='chgrp failed: failed to look up group %s' % group)
    if orig_gid != gid:
        try:
            os.lchown(b_path, -1, gid)
        except OSError:
            module.fail_json(path=to_text(b_path), msg='chgrp failed')


# ----------------------------------------------------------------------------------------------
# the module: option checks, one run, and the entry points module_kwargs() and run(module)

def parse_mode(value):
    """An octal mode from ``"0600"``, ``"600"`` or an int; raise BackupError otherwise."""
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in '01234567' for c in text):
            raise BackupError('mode %r is not an octal number such as "0600"' % value)
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise BackupError('mode %r is out of range' % value)
    return mode


def validate_options(params):
    """Everything about the input that can be checked without touching anything; returns derived settings."""
    problem = check_connection_params(params, ENGINES)
    if problem:
        raise BackupError(problem)
    engine = params['engine']
    state = params['state']
    if state == 'present' and not params.get('dest'):
        raise BackupError('state present needs dest (the backup folder)')
    if state == 'restored' and not (params.get('dest') or params.get('backup')):
        raise BackupError('state restored needs backup, or dest to find the newest backup in')
    if state == 'present':
        for option in ('backup', 'target_database'):
            if params.get(option):
                raise BackupError('%s applies to state restored only' % option)
    if engine == 'firebird' and not params.get('path'):
        raise BackupError('engine firebird needs path (the database file as the server sees it)')
    fmt = resolve_format(engine, params.get('format'))
    compression = resolve_compression(engine, fmt, params.get('compression'))
    jobs = params.get('jobs')
    if jobs is None or jobs < 1:
        raise BackupError('jobs must be 1 or more')
    if jobs > 1 and not (engine == 'postgresql' and fmt == 'directory'):
        raise BackupError('jobs %d needs engine postgresql with format directory (other formats are written by one process)' % jobs)
    if params.get('keep') is not None and params['keep'] < 1:
        raise BackupError('keep must be 1 or more (the backup just taken is always kept)')
    if params.get('label') is not None and not params['label'].strip():
        raise BackupError('label must not be empty')
    try:
        for option in ('dest', 'backup', 'path', 'bin_dir') + (('target_database',) if engine in ('sqlite', 'files', 'firebird') else ()):
            _paths.check_option_path(params.get(option), option)
        _paths.check_name_part(params.get('label'), 'label')
        _paths.check_name_part(params.get('name'), 'name')
    except _paths.PathEscape as exc:
        raise BackupError(str(exc)) from None
    mode = parse_mode(params.get('mode') if params.get('mode') is not None else '0600')
    if state == 'present':
        # render once now, so a bad template fails before anything is touched
        render_name(params.get('name'), engine, 'db', params.get('label'), utc_timestamp(), backup_extension(engine, fmt, compression))
    return dict(format=fmt, compression=compression, mode=mode)


def check_account(owner, group):
    for value, lookup, what in ((owner, pwd.getpwnam, 'owner'), (group, grp.getgrnam, 'group')):
        if value is None or value.isdigit():
            continue
        try:
            lookup(value)
        except KeyError:
            raise BackupError('%s %s does not exist on this host' % (what, value)) from None


def display_name(params):
    if params.get('database') and params['engine'] not in ('sqlite', 'files'):
        return params['database'] if params['engine'] != 'firebird' or not params.get('path') else _stem(params['path'])
    return _stem(params.get('path') or params.get('database') or 'db')


def _stem(path):
    base = os.path.basename(os.path.normpath(path))
    stem = os.path.splitext(base)[0]
    return stem or base


class Runner:
    """One module run: holds the module, the engine and what must be cleaned up on failure."""

    def __init__(self, module, settings):
        self.module = module
        self.params = module.params
        self.settings = settings
        self.started = time.monotonic()
        self.engine = make_engine(module, self.params, settings['format'], settings['compression'],
                                  secret_parent=getattr(module, 'tmpdir', None))
        self.temporary = []
        self.result = dict(changed=False, backup_path=None, manifest={}, verified=False, reused=False, rejected=[])

    # -- verification ---------------------------------------------------------------------------
    def verify_backup(self, path, manifest, level, expected_counts=None, fresh=False):
        """Run ``level`` checks on ``path``; return (checks, row_counts); raise BackupError on failure."""
        checks = []
        if not fresh:
            problem = check_checksum(manifest, path)
            if problem:
                raise BackupError(problem)
            checks.append('sha256 matches the manifest')
        else:
            checks.append('sha256 computed while writing (%s)' % manifest.get('checksum_method'))
        counts = None
        if level in ('quick', 'restore'):
            checks.append(self.engine.quick_check(path, manifest))
        if level == 'restore':
            scratch = self.engine.restore_scratch(path, manifest, self.engine.scratch_hint(path))
            try:
                counts = self.engine.scratch_counts(scratch)
            finally:
                self.engine.drop_scratch(scratch)
            if expected_counts is not None:
                problems = compare_row_counts(expected_counts, counts)
                if problems:
                    raise BackupError('the test restore differs from the source: %s' % '; '.join(problems[:10]))
                checks.append('test restore: %d tables, row counts equal to the source' % len(counts))
            else:
                checks.append('test restore: %d tables restored (the manifest has no source counts to compare)' % len(counts))
        return checks, counts

    def check_existing(self, manifest, level):
        """None when an existing backup can be trusted at ``level`` (checksum only in check mode), else the reason."""
        verification = manifest.get('verification') or {}
        if not verification.get('ok'):
            return 'its own verification had failed or never ran'
        try:
            if self.module.check_mode:
                return check_checksum(manifest, manifest['backup_path'])
            self.verify_backup(manifest['backup_path'], manifest, level, expected_counts=manifest.get('row_counts'))
        except BackupError as exc:
            return str(exc)
        except OSError as exc:
            return 'cannot read %s: %s' % (manifest['backup_path'], exc)
        return None

    # -- files ----------------------------------------------------------------------------------
    def apply_attributes(self, path):
        mode = self.settings['mode']
        paths = [path]
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                paths += [os.path.join(folder, n) for n in dirs + files]
        for item in paths:
            set_mode_if_different(self.module, item, mode_for_directory(mode) if os.path.isdir(item) else mode)
            if self.params.get('owner'):
                set_owner_if_different(self.module, item, self.params['owner'])
            if self.params.get('group'):
                set_group_if_different(self.module, item, self.params['group'])

    def check_dest_writable(self, dest):
        if not os.path.exists(dest):
            parent = os.path.dirname(os.path.abspath(dest))
            if not os.path.isdir(parent):
                raise BackupError('dest %s does not exist and neither does its parent %s' % (dest, parent))
            if not self.module.check_mode:
                try:
                    os.mkdir(dest, 0o700)
                except OSError as exc:
                    raise BackupError('cannot create dest %s: %s' % (dest, exc.strerror)) from exc
            return
        if not os.path.isdir(dest):
            raise BackupError('dest %s exists and is not a folder' % dest)
        if self.module.check_mode:
            if not os.access(dest, os.W_OK | os.X_OK):
                raise BackupError('dest %s is not writable' % dest)
            return
        try:
            fd, probe = tempfile.mkstemp(prefix='.db_backup-probe-', dir=dest)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise BackupError('dest %s is not writable: %s' % (dest, exc.strerror)) from exc

    # -- state=present --------------------------------------------------------------------------
    def present(self):
        params = self.params
        engine = self.engine
        dest = params['dest']
        fmt, compression = self.settings['format'], self.settings['compression']
        level = params['verify']
        self.check_dest_writable(dest)
        engine.resolve_programs()
        version, db_size = engine.probe()
        source = engine.source_id()
        existing = matching_manifests(load_manifests(dest), params['engine'], source)

        if params.get('label'):
            for manifest in matching_manifests(existing, params['engine'], source, params['label'], fmt, compression,
                                               label_required=True):
                reason = self.check_existing(manifest, level)
                if reason is None:
                    self.result.update(backup_path=manifest['backup_path'], manifest=_public(manifest), reused=True,
                                       verified=True, deleted=[])
                    return
                self.result['rejected'].append(dict(backup_path=manifest['backup_path'], reason=reason))
                self.module.warn('backup %s with label %s is not reused: %s' % (manifest['backup_path'], params['label'], reason))

        free = free_space(dest)
        needed = db_size or 0
        extension = backup_extension(params['engine'], fmt, compression)
        now = utc_now()  # one reading for the name and the manifest's created_at/created_ns
        name = render_name(params.get('name'), params['engine'], display_name(params), params.get('label'), utc_timestamp(now),
                           extension)
        final = os.path.join(dest, name)
        counter = 1
        while os.path.lexists(final) or os.path.lexists(manifest_path(final)):
            counter += 1
            final = os.path.join(dest, '%s-%d%s' % (name[:-len(extension)], counter, extension))
        self.result.update(backup_path=final, estimated_size=db_size, free_space=free, space_ok=free >= needed)
        if free < needed:
            raise BackupError('not enough free space in %s: the database is %d bytes, %d bytes are free' % (dest, needed, free))
        planned = existing + [dict(backup_path=final, created_ns=epoch_ns(now))]
        doomed = select_for_retention(planned, params.get('keep'), final)
        self.result['deleted'] = [m['backup_path'] for m in doomed]
        self.result['changed'] = True
        if self.module.check_mode:
            return

        tool_versions = engine.tool_versions()
        token = secrets.token_hex(4)
        tmp = os.path.join(dest, '.%s.%s.tmp' % (name, token))
        tmp_manifest = os.path.join(dest, '.%s.%s.manifest.tmp' % (name, token))
        self.temporary += [tmp, tmp_manifest]
        dumped = engine.dump(tmp, count_rows=level == 'restore')
        manifest = build_manifest(
            params['engine'], display_name(params), source, params.get('label'), fmt, compression, os.path.basename(final),
            dumped['size'], dumped['sha256'], version, tool_versions, db_size, iso_now(now), dumped['checksum_method'],
            files=dumped.get('files'), row_counts=dumped.get('row_counts'), extra=dumped.get('extra'),
            created_ns=epoch_ns(now))
        try:
            checks, counts = self.verify_backup(tmp, manifest, level, expected_counts=dumped.get('row_counts'), fresh=True)
        except BackupError as exc:
            raise BackupError('verification (%s) of the new backup failed, so it was removed and no older backup was'
                              ' deleted: %s' % (level, exc)) from exc
        manifest['verification'] = dict(level=level, ok=True, checks=checks, verified_at=iso_now())
        with open(tmp_manifest, 'x', encoding='utf-8') as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        self.apply_attributes(tmp)
        self.apply_attributes(tmp_manifest)
        os.rename(tmp, final)
        self.temporary.remove(tmp)
        self.temporary.append(final)
        os.rename(tmp_manifest, manifest_path(final))
        self.temporary = []
        fsync_path(dest)
        for old in doomed:
            remove_path(old['backup_path'])
            remove_path(old['manifest_path'])
        manifest['backup_path'] = final
        self.result.update(manifest=_public(manifest), verified=True)
        if counts is not None:
            self.result['row_counts'] = counts

    # -- state=restored -------------------------------------------------------------------------
    def find_backup(self):
        params = self.params
        if params.get('backup'):
            path = params['backup'].rstrip('/')
            try:
                with open(manifest_path(path), encoding='utf-8') as handle:
                    manifest = json.load(handle)
            except (OSError, ValueError) as exc:
                raise BackupError('backup %s has no readable manifest %s: %s' % (path, manifest_path(path), exc)) from exc
            if manifest.get('engine') != params['engine']:
                raise BackupError('backup %s is a %s backup, not %s' % (path, manifest.get('engine'), params['engine']))
            manifest['backup_path'] = path
            return manifest
        candidates = matching_manifests(load_manifests(params['dest']), params['engine'], self.engine.source_id(),
                                        params.get('label'), label_required=bool(params.get('label')))
        if not candidates:
            raise BackupError('no backup of %s%s with a manifest in %s' % (
                self.engine.source_id(), ' with label %s' % params['label'] if params.get('label') else '', params['dest']))
        return candidates[0]

    def restored(self):
        params = self.params
        engine = self.engine
        level = params['verify']
        manifest = self.find_backup()
        path = manifest['backup_path']
        self.result['backup_path'] = path
        engine.use_backup_format(manifest.get('format'), manifest.get('compression'))
        engine.resolve_programs()
        target = params.get('target_database') or engine.restore_target_default()
        self.result['target_database'] = target
        if not (manifest.get('verification') or {}).get('ok'):
            raise BackupError('backup %s did not pass its verification when it was taken; pass it as backup only after'
                              ' checking it by hand' % path)
        if self.module.check_mode:
            problem = check_checksum(manifest, path)
            if problem:
                raise BackupError('backup %s is not restored: %s' % (path, problem))
            self.result.update(changed=True, manifest=_public(manifest), verified=True)
            return
        quick = 'quick' if level == 'restore' else level
        try:
            self.verify_backup(path, manifest, quick)
        except BackupError as exc:
            self.result['rejected'].append(dict(backup_path=path, reason=str(exc)))
            raise BackupError('backup %s is not restored: %s' % (path, exc)) from exc
        scratch = engine.restore_scratch(path, manifest, target)
        done = False
        try:
            counts = engine.scratch_counts(scratch)
            if manifest.get('row_counts') is not None and level != 'none':
                problems = compare_row_counts(manifest['row_counts'], counts)
                if problems:
                    raise BackupError('the restored copy differs from the counts in the manifest, %s was left as it was: %s'
                                      % (target, '; '.join(problems[:10])))
            engine.swap_in(scratch, target, path, manifest)
            done = True
        finally:
            if not done:  # any exception, the caller's exit exceptions included
                engine.drop_scratch(scratch)
        self.result.update(changed=True, manifest=_public(manifest), verified=True, row_counts=counts)

    def cleanup(self):
        for path in self.temporary:
            remove_path(path)
        self.temporary = []
        self.engine.cleanup()


def _public(manifest):
    return dict((k, v) for k, v in manifest.items() if k not in ('manifest_path',))


def _os_error(exc):
    if getattr(exc, 'errno', None) == 28:
        return 'no space left on device (%s)' % (exc.filename or 'the backup')
    return '%s%s' % (exc.strerror or exc, ' (%s)' % exc.filename if exc.filename else '')


def module_kwargs():
    """The keyword arguments of ``AnsibleModule(**module_kwargs())`` for db_backup (a new dict on every call)."""
    argument_spec = database_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'restored']),
        dest=dict(type='path'),
        name=dict(type='str'),
        format=dict(type='str', choices=list(ALL_FORMATS)),
        compression=dict(type='str', choices=['none', 'gzip', 'zstd']),
        jobs=dict(type='int', default=1),
        label=dict(type='str'),
        verify=dict(type='str', default='quick', choices=['none', 'quick', 'restore']),
        keep=dict(type='int'),
        mode=dict(type='raw', default='0600'),
        owner=dict(type='str'),
        group=dict(type='str'),
        backup=dict(type='path'),
        target_database=dict(type='str'),
        bin_dir=dict(type='path'),
    )
    return dict(argument_spec=argument_spec, supports_check_mode=True)


def run(module):
    """The whole db_backup module on ``module``; ends in ``module.exit_json`` or ``module.fail_json``.

    Uses only ``params``, ``check_mode``, ``fail_json``, ``exit_json``, ``warn``, ``run_command``,
    ``get_bin_path`` and ``tmpdir`` of ``module``.  Exit exceptions raised by ``fail_json``/``exit_json``
    pass through unchanged (scratch copies and temporary files are removed on the way).  Installs a
    SIGTERM handler for the duration of the run (so it must run in the main thread) and restores the
    previous one.
    """
    try:
        settings = validate_options(module.params)
        check_account(module.params.get('owner'), module.params.get('group'))
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    if module.params['engine'] not in ('sqlite', 'files', 'mssql'):
        require_driver(module, module.params['engine'])

    def terminated(signum, _frame):
        raise BackupError('terminated by signal %d' % signum)

    previous_handler = signal.signal(signal.SIGTERM, terminated)
    runner = Runner(module, settings)
    failure = None
    try:
        if module.params['state'] == 'present':
            runner.present()
        else:
            runner.restored()
    except BackupError as exc:
        failure = str(exc)
    except OSError as exc:
        where = module.params.get('dest') or os.path.dirname(runner.result['backup_path'] or '')
        failure = 'writing in %s failed: %s' % (where, _os_error(exc))
    finally:
        runner.cleanup()
        signal.signal(signal.SIGTERM, previous_handler)
    for warning in runner.engine.warnings:
        module.warn(warning)
    runner.result['duration_s'] = elapsed(runner.started)
    if failure:
        runner.result.pop('changed', None)
        module.fail_json(msg=failure, **runner.result)
    module.exit_json(**runner.result)
