# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One db_backup run (``Runner``): disk space, the backup written to a temporary file and renamed, the manifest,
verification, retention and restore; plus the file attributes (mode, owner, group) it sets.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import secrets
import stat
import time

from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import (
    BackupError,
    backup_extension,
    build_manifest,
    compare_row_counts,
    epoch_ns,
    iso_now,
    load_manifests,
    manifest_path,
    matching_manifests,
    mode_for_directory,
    render_name,
    select_for_retention,
    utc_now,
    utc_timestamp,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.command import CommandEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.files import FilesEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.firebird import FirebirdEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.mssql import MssqlEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.mysql import MysqlEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.postgresql import PostgresEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.sqlite import SqliteEngine
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.hostio import LocalIO
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import check_checksum


ENGINE_CLASSES = {
    'postgresql': PostgresEngine,
    'mysql': MysqlEngine,
    'sqlite': SqliteEngine,
    'firebird': FirebirdEngine,
    'files': FilesEngine,
    'mssql': MssqlEngine,
    'command': CommandEngine,
}


def make_engine(module, params, fmt, compression, secret_parent=None):
    return ENGINE_CLASSES[params['engine']](module, params, fmt, compression, secret_parent)


free_space = LocalIO.free_space


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


def display_name(params):
    if params['engine'] == 'command':
        return params.get('database') or _stem(((params.get('command') or {}).get('argv') or ['command'])[0])
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
        # where the files and programs are: here (LocalIO), or a remote host's operations (a Windows host's upgrade)
        self.io = getattr(module, 'backup_io', None) or LocalIO()
        self.remote = self.io if self.io.remote else None
        self.engine = make_engine(module, self.params, settings['format'], settings['compression'],
                                  secret_parent=getattr(module, 'tmpdir', None))
        self.engine.io = self.io
        self.temporary = []
        self.result = dict(changed=False, backup_path=None, manifest={}, verified=False, reused=False, rejected=[])

    # -- verification ---------------------------------------------------------------------------
    def verify_backup(self, path, manifest, level, expected_counts=None, fresh=False):
        """Run ``level`` checks on ``path``; return (checks, row_counts); raise BackupError on failure."""
        checks = []
        if not fresh:
            problem = check_checksum(manifest, path, self.remote)
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
                return check_checksum(manifest, manifest['backup_path'], self.remote)
            self.verify_backup(manifest['backup_path'], manifest, level, expected_counts=manifest.get('row_counts'))
        except BackupError as exc:
            return str(exc)
        except OSError as exc:
            return 'cannot read %s: %s' % (manifest['backup_path'], exc)
        return None

    # -- files ----------------------------------------------------------------------------------
    def apply_attributes(self, path):
        if self.remote:  # Windows: no POSIX mode, owner or group (the folder's ACL is inherited); owner/group are refused
            return
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
        io = self.io
        if not io.exists(dest):
            parent = os.path.dirname(dest.rstrip('/')) if self.remote else os.path.dirname(os.path.abspath(dest))
            if not io.isdir(parent):
                raise BackupError('dest %s does not exist and neither does its parent %s' % (dest, parent))
            if not self.module.check_mode:
                try:
                    io.mkdir(dest)
                except OSError as exc:
                    raise BackupError('cannot create dest %s: %s' % (dest, exc.strerror)) from exc
            return
        if not io.isdir(dest):
            raise BackupError('dest %s exists and is not a folder' % dest)
        problem = io.writable(dest, self.module.check_mode)
        if problem:
            raise BackupError('dest %s is not writable%s' % (dest, '' if self.module.check_mode else ': %s' % problem))

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
        existing = matching_manifests(load_manifests(dest, self.remote), params['engine'], source)

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

        free = self.io.free_space(dest)
        needed = db_size or 0
        extension = backup_extension(params['engine'], fmt, compression)
        now = utc_now()  # one reading for the name and the manifest's created_at/created_ns
        name = render_name(params.get('name'), params['engine'], display_name(params), params.get('label'), utc_timestamp(now),
                           extension)
        final = os.path.join(dest, name)
        counter = 1
        while self.io.exists(final) or self.io.exists(manifest_path(final)):
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
        self.io.write_new(tmp_manifest, json.dumps(manifest, indent=2, sort_keys=True) + '\n')
        self.apply_attributes(tmp)
        self.apply_attributes(tmp_manifest)
        self.io.rename(tmp, final)
        self.temporary.remove(tmp)
        self.temporary.append(final)
        self.io.rename(tmp_manifest, manifest_path(final))
        self.temporary = []
        self.io.fsync_dir(dest)
        for old in doomed:
            self.io.remove(old['backup_path'])
            self.io.remove(old['manifest_path'])
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
                text = self.io.read_text(manifest_path(path))
                if text is None:
                    raise OSError('missing or unreadable')
                manifest = json.loads(text)
            except (OSError, ValueError) as exc:
                raise BackupError('backup %s has no readable manifest %s: %s' % (path, manifest_path(path), exc)) from exc
            if manifest.get('engine') != params['engine']:
                raise BackupError('backup %s is a %s backup, not %s' % (path, manifest.get('engine'), params['engine']))
            manifest['backup_path'] = path
            return manifest
        candidates = matching_manifests(load_manifests(params['dest'], self.remote), params['engine'], self.engine.source_id(),
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
            problem = check_checksum(manifest, path, self.remote)
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
            try:
                self.io.remove(path)
            except Exception:  # pylint: disable=broad-except
                pass  # the cleanup of a failed run: the failure itself is what is reported
        self.temporary = []
        self.engine.cleanup()


def _public(manifest):
    return dict((k, v) for k, v in manifest.items() if k not in ('manifest_path',))
