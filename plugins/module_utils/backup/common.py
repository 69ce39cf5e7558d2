# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every db_backup engine shares that touches nothing: formats and compressions, backup file names,
timestamps, retention order, manifests (build, load, match) and row-count comparison.

Plain functions that the unit tests call directly; ``BackupError`` is the one exception of the whole backup package.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets


MANIFEST_VERSION = 1
MANIFEST_SUFFIX = '.manifest.json'
CHUNK = 1024 * 1024
DEFAULT_FORMAT = {'postgresql': 'custom', 'mysql': 'sql', 'sqlite': 'sqlite', 'firebird': 'gbak', 'files': 'tar',
                  'mssql': 'bak', 'command': 'tar'}
FORMATS = {'postgresql': ('custom', 'directory'), 'mysql': ('sql',), 'sqlite': ('sqlite',), 'firebird': ('gbak',),
           'files': ('tar',), 'mssql': ('bak',), 'command': ('tar',)}
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


def load_manifests(dest, io=None):
    """Every readable manifest in ``dest`` (temporary dot-files ignored), each with ``backup_path`` set.
    ``io``: a remote host's operations (``backup/hostio.py``) instead of the local files."""
    found = []
    if io is not None:
        names = sorted(io.listdir(dest))
    else:
        try:
            names = sorted(os.listdir(dest))
        except OSError:
            return found
    for name in names:
        if name.startswith('.') or not name.endswith(MANIFEST_SUFFIX):
            continue
        path = os.path.join(dest, name)
        try:
            if io is not None:
                data = json.loads(io.read_text(path) or '')
            else:
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
