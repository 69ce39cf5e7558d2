# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything preflight and the roles read on a host, in one pass (the module upgrade_host_state).

:func:`read_state` decides nothing of the upgrade: it reads the installed version, the journal and the lock (as
``upgrade_journal`` reads them), and - when the host has work to do - the release artifact (size and sha256), its
checksum file, the prior version's installer, the database file and the free space. The roles judge what it read on
the controller. It reaches the host through a reader with five operations, so that the same code runs inside the
module on a POSIX host (:class:`PosixReader`) and in the action plugin on the controller for a Windows host:

=========================================  ===================================================================
``read_text(path)``                        a text file's content, None when it is missing or unreadable
``stat(path, sha256)``                     dict(exists, isdir, size, checksum) (checksum only when asked)
``free_space(path)``                       bytes free for an unprivileged user on the file system of ``path``
``lock(lock_file, run_id, stale_after)``   dict(held, holder, available, reason) of the host's upgrade lock
``parent(path)``                           the folder of ``path``
=========================================  ===================================================================
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils import versions as _versions

ENTRIES_KEPT = 1000


def argument_spec():
    return dict(
        version_file=dict(type='path', required=True),
        journal=dict(type='path', required=True),
        target=dict(type='str', required=True),
        run_id=dict(type='str'),
        stale_after=dict(type='int', default=3600),
        lock_file=dict(type='path'),
        artifact=dict(type='path'),
        checksum_file=dict(type='path'),
        prior_installer=dict(type='str'),
        database_file=dict(type='path'),
        space_paths=dict(type='list', elements='path', default=[]),
        always=dict(type='bool', default=False),
    )


def parse_entries(text):
    """The journal's entries from its text (JSON lines); a line cut by a crash is ignored, as upgrade_journal does."""
    entries = []
    for line in (text or '').splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def problems(params):
    """What is wrong with the input, before anything is read."""
    found = []
    if not str(params.get('target') or '').strip():
        found.append('target must not be empty')
    if (params.get('stale_after') or 0) < 0:
        found.append('stale_after must not be negative')
    return found


def needed(installed, attempt, target):
    """True when the host has work to do: an open attempt, or an installed version older than the target."""
    if attempt.get('open'):
        return True
    if not installed:
        return False
    try:
        return _versions.compare(installed, target) < 0
    except _versions.VersionError:
        return True  # a version the rules cannot read: read everything, preflight judges it


def read_state(params, reader):
    """What preflight needs of the host, read through ``reader``; decides nothing but which files to look at."""
    journal_path = params['journal']
    lock_file = params.get('lock_file') or reader.parent(journal_path) + '/upgrade.lock'
    version_text = reader.read_text(params['version_file'])
    installed = version_text.splitlines()[0].strip() if version_text and version_text.splitlines() else ''
    journal_stat = reader.stat(journal_path, False)
    if journal_stat['exists'] and journal_stat['isdir']:
        raise ValueError('journal %s is not a regular file' % journal_path)
    entries = parse_entries(reader.read_text(journal_path)) if journal_stat['exists'] else []
    attempt = _journal.attempt_state(entries, params['target'])
    result = dict(
        changed=False,
        version_file=dict(path=params['version_file'], exists=version_text is not None),
        installed_version=installed,
        journal=dict(entries=entries[-ENTRIES_KEPT:], attempt=attempt,
                     lock=reader.lock(lock_file, params.get('run_id'), params.get('stale_after', 3600))),
    )
    from_version = attempt['data'].get('from_version', installed) if attempt['open'] else installed
    result['from_version'] = from_version
    result['needed'] = needed(installed, attempt, params['target'])
    if not (result['needed'] or params.get('always')):
        return result
    if params.get('artifact'):
        result['artifact'] = dict(reader.stat(params['artifact'], True), path=params['artifact'])
    if params.get('checksum_file'):
        text = reader.read_text(params['checksum_file'])
        result['checksum_file'] = dict(
            path=params['checksum_file'], readable=text is not None,
            expected=(text.split() or [''])[0].lower() if text else '',
            msg='' if text is not None else 'file not found or not readable: %s' % params['checksum_file'])
    if params.get('prior_installer'):
        path = params['prior_installer'].replace('{version}', from_version)
        result['prior_installer'] = dict(reader.stat(path, False), path=path)
    if params.get('database_file'):
        result['database_file'] = dict(reader.stat(params['database_file'], False), path=params['database_file'])
    space = []
    for path in dict.fromkeys(params.get('space_paths') or []):
        free = reader.free_space(path)
        space.append(dict(path=path, bytes_free=free, mb_free=round(free / 1048576.0, 1)))
    result['free_space'] = space
    result['free_mb_min'] = min(s['mb_free'] for s in space) if space else None
    return result


class PosixReader:
    """The reader's operations on the host the module runs on."""

    @staticmethod
    def parent(path):
        return os.path.dirname(path.rstrip('/')) or '/'

    @staticmethod
    def read_text(path):
        try:
            with open(path, encoding='utf-8') as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError):
            return None

    @staticmethod
    def stat(path, sha256):
        try:
            info = os.stat(path)
        except OSError:
            return dict(exists=False, isdir=False, size=0, checksum=None)
        isdir = os.path.isdir(path)
        checksum = None
        if sha256 and not isdir:
            digest = hashlib.sha256()
            try:
                with open(path, 'rb') as handle:
                    for block in iter(lambda: handle.read(1 << 20), b''):
                        digest.update(block)
                checksum = digest.hexdigest()
            except OSError:
                checksum = None
        return dict(exists=True, isdir=isdir, size=info.st_size, checksum=checksum)

    @staticmethod
    def free_space(path):
        """Free bytes on the file system of ``path`` (of its nearest existing folder, when it is not there yet)."""
        probe = path
        while probe and not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        info = os.statvfs(probe or '/')
        return info.f_bavail * info.f_frsize

    @staticmethod
    def lock(lock_file, run_id, stale_after):
        exists = os.path.exists(lock_file)
        holder = _journal.read_lock(lock_file) if exists else {}
        available, reason = _journal.judge_lock(holder, exists, run_id, stale_after)
        return dict(held=exists, holder=holder, available=available, reason=reason)
