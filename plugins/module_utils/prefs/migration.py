# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Settings carry-over for the prefs_migrate module and its Windows action plugin.

The engines (patterns, formats, the three-way merge, diffs) are pure: they take bytes and paths as
strings and return bytes and reports, so the POSIX module (which reads the files itself) and the action
plugin (which fetches them from a Windows host) run exactly the same merge.

This file holds the whole POSIX module (``Migration``), so that another module can run it in its own
process: ``run(AnsibleModule(**module_kwargs()))`` is all the module ``prefs_migrate`` does.  The package
holds one file per format (``properties``, ``ini``, ``jsonfile``, ``xmlfile``) on the shared core: ``common``,
``patterns`` (item patterns), ``masking`` (secrets in diffs), ``text`` and ``merge`` (the three-way merge).

Formats and what an edit keeps:

* ``properties`` (Java): read as ISO-8859-1 with ``\\uXXXX`` escapes, as ``java.util.Properties`` does;
  only the value part of a changed line is rewritten, every other byte (comments, order, blank lines,
  CRLF or LF, the separator style) stays.  Values the file cannot hold in ISO-8859-1 become ``\\uXXXX``.
* ``ini``: sections and ``key = value`` / ``key: value`` lines, ``;`` and ``#`` comments, keys and
  sections compared case-insensitively as Windows does; encoding kept (UTF-8, UTF-8 or UTF-16 with a
  BOM, otherwise ISO-8859-1).  No multi-line values; a duplicate key or an unclosed ``[section`` is
  refused as ambiguous.
* ``json``: objects are walked, every non-object value (lists included) is one key ``a/b/c``.  An
  unchanged file is never rewritten; a changed one is dumped again with the indent, separators, line
  ending, final newline and encoding detected from the new file (JSON has no comments to keep).
* ``xml``: every attribute and every text of an element without child elements is a key, for example
  ``config/server/@port`` or ``map/entry[@key='cache.size']/@value``; an element is told apart from
  its siblings by its ``key``, ``name`` or ``id`` attribute, else by its position (``server[2]``).  Edits
  are made on the bytes at the positions the parser reports, so comments, processing instructions,
  formatting and the declared encoding stay.  UTF-16 and multi-byte encodings other than UTF-8 are
  refused; a site-added element is inserted only under a parent that has child elements in the new file.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import posixpath
import pwd
import shutil
import stat
import tempfile
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import CHUNK, DIFF_LIMIT, PrefsError, prefs_argument_spec
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.masking import file_diff, is_key_file
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.merge import merge, norm_rel
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.patterns import (
    check_item_path,
    is_inside,
    item_matches,
    literal_prefix,
    pattern_regex,
    resolve_format,
    select_files,
)


# --------------------------------------------------------------------------------------------------
# the module prefs_migrate on a POSIX host: plan, then carry out as one transaction

MERGE_LIMIT = 64 * 1024 * 1024
MANIFEST = '.prefs_migrate-manifest.json'


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


class Tree:
    """Finds the regular files and symlinks an item matches under one root, refusing what may not be touched.

    Every path is checked component by component (``paths.resolve_under``): a symlink anywhere on the way that
    leads outside the root is refused, naming it.  A symlink that stays inside is recorded in ``links`` to be
    recreated as a symlink, never followed (not even into a folder).
    """

    def __init__(self, root, label):
        self.root = root
        self.real = os.path.realpath(root)
        self.label = label
        self.files = {}  # rel -> os.stat_result of the regular file
        self.links = {}  # rel -> the text of a symlink that stays inside the root

    def _link(self, path, rel):
        """Record the symlink ``rel`` (already checked to stay inside) or refuse it."""
        target = os.readlink(path)
        if not _paths.link_target_inside(rel, target):
            # the text climbs out or is absolute, though it lands inside: recreate it relative, by where it lands
            real = os.path.realpath(path)
            target = os.path.relpath(real, os.path.join(self.real, os.path.dirname(rel))).replace(os.sep, '/')
        self.links[rel] = target

    def scan(self, pattern):
        """Add the files and inside symlinks matching ``pattern`` to ``self.files`` and ``self.links``."""
        regex = pattern_regex(pattern)
        segments = pattern.split('/')
        depth_limit = None if '**' in segments else len(segments)
        start = literal_prefix(pattern)
        try:
            start_path = _paths.resolve_under(self.root, start, self.label, follow_last=False) if start else self.real
        except _paths.PathEscape as exc:
            raise PrefsError(str(exc)) from None
        if not os.path.lexists(start_path):
            return
        visited = set()
        stack = [(start, start_path)]
        while stack:
            rel, path = stack.pop()
            st = os.lstat(path)
            matched = bool(rel) and item_matches(regex, rel)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(path)
                if not is_inside(real, self.real):
                    raise PrefsError('%s %s is a symlink to %s, which leads outside %s (to %s); refused, nothing was written'
                                     % (self.label, rel, os.readlink(path), self.root, real))
                if matched:
                    self._link(path, rel)
                    continue
                if rel != start or not os.path.isdir(real):
                    continue
                # the item names a path through this inside folder link (conf/*.properties with conf -> settings)
                path, st = real, os.stat(real)
            if stat.S_ISDIR(st.st_mode):
                depth = len(rel.split('/')) if rel else 0
                if not matched and depth_limit is not None and depth >= depth_limit:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in visited:
                    continue
                visited.add(key)
                with os.scandir(path) as entries:
                    for entry in entries:
                        stack.append(((rel + '/' + entry.name) if rel else entry.name, entry.path))
            elif not matched:
                continue
            elif stat.S_ISREG(st.st_mode):
                self.files[rel] = st
            else:
                raise PrefsError('%s %s is a special file (%s); refused' % (self.label, rel, _kind(st.st_mode)))


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, 'fifo'), (stat.S_ISSOCK, 'socket'), (stat.S_ISCHR, 'character device'),
                       (stat.S_ISBLK, 'block device'), (stat.S_ISDIR, 'directory')):
        if test(mode):
            return name
    return 'unknown type'


def _read(root, rel, limit, label):
    """The bytes of ``root/rel``, opened without following a symlink out of ``root`` (checked again right here)."""
    try:
        data = _paths.read_under(root, rel, limit, label)
    except _paths.PathEscape as exc:
        raise PrefsError(str(exc)) from None
    if len(data) > limit:
        raise PrefsError('%s is more than %d bytes, too large to merge; use mode copy' % (rel, limit))
    return data


class Migration:
    """Plans the carry-over without touching anything, then carries it out as one transaction."""

    def __init__(self, module):
        self.module = module
        params = module.params
        self.src = os.path.abspath(params['src'])
        self.dest = os.path.abspath(params['dest'])
        self.defaults = os.path.abspath(params['defaults']) if params['defaults'] else None
        self.backup_dir = os.path.abspath(params['backup_dir']) if params['backup_dir'] else None
        self.items = []
        self.actions = []  # dicts: kind (copy|write|attrs), rel, target, exists, ...
        self.result = dict(changed=False, copied=[], merged=[], kept=[], dropped_keys={}, missing=[], backup_dir=None)
        self.diffs = []
        self.warnings = []

    # ---------------------------------------------------------------- checks and plan
    def check(self):
        for option in ('src', 'dest', 'defaults', 'backup_dir'):
            try:
                _paths.check_option_path(self.module.params[option], option)
            except _paths.PathEscape as exc:
                raise PrefsError(str(exc)) from None
        for label, path in (('src', self.src), ('dest', self.dest)):
            if not os.path.exists(path):
                raise PrefsError('%s %s does not exist' % (label, path))
            if not os.path.isdir(path):
                raise PrefsError('%s %s is not a directory' % (label, path))
        src_real, dest_real = os.path.realpath(self.src), os.path.realpath(self.dest)
        if src_real == dest_real:
            raise PrefsError('src and dest are the same folder (%s)' % src_real)
        if is_inside(dest_real, src_real):
            raise PrefsError('dest %s lies inside src %s; refused' % (self.dest, self.src))
        if is_inside(src_real, dest_real):
            raise PrefsError('src %s lies inside dest %s; refused' % (self.src, self.dest))
        if self.defaults is not None and not os.path.isdir(self.defaults):
            raise PrefsError('defaults %s is not an existing directory' % self.defaults)
        if self.backup_dir is not None:
            backup_real = os.path.realpath(self.backup_dir)
            for label, real in (('src', src_real), ('dest', dest_real)):
                if is_inside(backup_real, real):
                    raise PrefsError('backup_dir %s lies inside %s; choose a folder outside both roots' % (self.backup_dir, label))
            if os.path.exists(self.backup_dir) and not os.path.isdir(self.backup_dir):
                raise PrefsError('backup_dir %s exists and is not a directory' % self.backup_dir)
        for raw in self.module.params['items']:
            item = dict(raw)
            item['path'] = check_item_path(item['path'])
            self.items.append(item)

    @staticmethod
    def _checked(root, rel, label, follow_last=True):
        """``paths.resolve_under`` with its refusal as a PrefsError."""
        if not rel:
            return os.path.realpath(root)
        try:
            return _paths.resolve_under(root, rel, label, follow_last=follow_last)
        except _paths.PathEscape as exc:
            raise PrefsError(str(exc)) from None

    def plan(self):
        self.check()
        src_tree = Tree(self.src, 'src')
        dest_tree = Tree(self.dest, 'dest')
        for item in self.items:
            src_tree.scan(item['path'])
            if item['mode'] == 'keep':
                dest_tree.scan(item['path'])
        selection, missing = select_files(self.items, list(src_tree.files) + list(src_tree.links),
                                          list(dest_tree.files) + list(dest_tree.links))
        self.result['missing'] = missing
        required_missing = [i['path'] for i in self.items if i['required'] and i['path'] in missing]
        if required_missing:
            raise PrefsError('required item(s) not found in src %s: %s' % (self.src, ', '.join(required_missing)))
        dest_real = os.path.realpath(self.dest)
        for rel, item in selection.items():
            if item['mode'] == 'keep':
                if os.path.lexists(os.path.join(self.dest, rel)):
                    self.result['kept'].append(rel)
                continue
            target = os.path.join(self.dest, rel)
            if rel in src_tree.links:
                if item['mode'] == 'merge' and os.path.isfile(target) and not os.path.islink(target):
                    # a merge reads the old values through the inside link; the new file stays a file
                    self._plan_merge(rel, item, target, self._dest_stat(rel, target, dest_real))
                    continue
                self._plan_link(rel, src_tree.links[rel], target, dest_real)
                continue
            dest_st = self._dest_stat(rel, target, dest_real)
            src_path = os.path.join(self.src, rel)
            src_st = src_tree.files[rel]
            if item['mode'] == 'merge' and dest_st is not None:
                self._plan_merge(rel, item, target, dest_st)
            else:
                if item['mode'] == 'merge':
                    resolve_format(item['format'], rel)
                self._plan_copy(rel, src_path, src_st, target, dest_st)
        if self.backup_dir is not None:
            # an existing backup_dir is written into: no folder in it on the way may be a symlink leading out of it
            for action in self.actions:
                if action['exists']:
                    self._checked(self.backup_dir, posixpath.dirname(action['rel']), 'backup_dir')

    def _dest_stat(self, rel, target, dest_real):
        """Stat of the target in dest (None when absent); refuses escapes, folders and special files there."""
        self._checked(self.dest, posixpath.dirname(rel), 'dest')
        if not os.path.lexists(target):
            return None
        real = self._checked(self.dest, rel, 'dest')
        if not is_inside(real, dest_real):
            raise PrefsError('dest %s leads outside %s (to %s); refused' % (rel, self.dest, real))
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise PrefsError('dest %s is a %s where src has a file; refused' % (rel, _kind(st.st_mode)))
        return st

    def _plan_link(self, rel, text, target, dest_real):
        """Recreate the inside symlink ``rel`` of src as a symlink in dest (never followed); refuse one leading out there."""
        self._checked(self.dest, posixpath.dirname(rel), 'dest')
        where = os.path.realpath(os.path.join(os.path.realpath(os.path.dirname(target)), text))
        if not is_inside(where, dest_real):
            raise PrefsError('src %s is a symlink to %s, which would lead outside dest %s there (to %s); refused'
                             % (rel, text, self.dest, where))
        dest_st = None
        if os.path.lexists(target):
            dest_st = os.lstat(target)
            if stat.S_ISLNK(dest_st.st_mode) and os.readlink(target) == text:
                return
            if stat.S_ISDIR(dest_st.st_mode):
                raise PrefsError('dest %s is a directory where src has a symlink (to %s); refused' % (rel, text))
        self.actions.append(dict(kind='link', rel=rel, target=target, text=text, exists=dest_st is not None, dest_st=dest_st))
        self.result['copied'].append(rel)
        if self.module._diff:
            before = None
            if dest_st is not None:
                before = (('symlink to %s\n' % os.readlink(target)).encode() if stat.S_ISLNK(dest_st.st_mode)
                          else self._diff_bytes(target, dest_st))
            self.diffs.append(file_diff(rel, before, ('symlink to %s\n' % text).encode()))

    def _same_content(self, src_path, src_st, target, dest_st):
        if src_st.st_size != dest_st.st_size:
            return False
        if src_st.st_mtime_ns == dest_st.st_mtime_ns:
            return True
        return sha256_file(src_path) == sha256_file(target)

    def _plan_copy(self, rel, src_path, src_st, target, dest_st):
        key = is_key_file(rel)
        if dest_st is not None and self._same_content(src_path, src_st, target, dest_st):
            if (stat.S_IMODE(src_st.st_mode), src_st.st_uid, src_st.st_gid) == (stat.S_IMODE(dest_st.st_mode), dest_st.st_uid, dest_st.st_gid):
                return
            self.actions.append(dict(kind='attrs', rel=rel, target=target, src_st=src_st, dest_st=dest_st, exists=True))
            self.result['copied'].append(rel)
            return
        if key and stat.S_IMODE(src_st.st_mode) & 0o077:
            self.warnings.append('private key %s has mode %04o in src; its mode is kept' % (rel, stat.S_IMODE(src_st.st_mode)))
        self.actions.append(dict(kind='copy', rel=rel, target=target, src=src_path, src_st=src_st,
                                 exists=dest_st is not None, dest_st=dest_st))
        self.result['copied'].append(rel)
        if self.module._diff:
            self.diffs.append(file_diff(rel, self._diff_bytes(target, dest_st), self._diff_bytes(src_path, src_st), key_file=key))

    def _plan_merge(self, rel, item, target, dest_st):
        fmt = resolve_format(item['format'], rel)
        old = _read(self.src, rel, MERGE_LIMIT, 'src')
        new = _read(self.dest, rel, MERGE_LIMIT, 'dest')
        defaults = None
        if self.defaults is not None:
            default_path = self._checked(self.defaults, rel, 'defaults')
            if os.path.isfile(default_path):
                defaults = _read(self.defaults, rel, MERGE_LIMIT, 'defaults')
        merged, report = merge(fmt, old, new, defaults, rel)
        entry = dict(path=rel, format=fmt, keys=report['keys'], added=report['added'], changed=report['changed'])
        self.result['merged'].append(entry)
        if report['dropped']:
            self.result['dropped_keys'][rel] = report['dropped']
        if report['changed']:
            self.actions.append(dict(kind='write', rel=rel, target=target, content=merged, dest_st=dest_st, exists=True))
            if self.module._diff:
                self.diffs.append(file_diff(rel, new, merged))

    @staticmethod
    def _diff_bytes(path, st):
        if st is None:
            return None
        if st.st_size > DIFF_LIMIT:
            return st.st_size
        with open(path, 'rb') as handle:
            return handle.read()

    # ---------------------------------------------------------------- carry out
    def _backup_root(self):
        if self.backup_dir is not None:
            return self.backup_dir
        stamp = time.strftime('%Y%m%dT%H%M%S')
        base = '%s.prefs_backup-%s' % (self.dest.rstrip(os.sep), stamp)
        path = base
        counter = 1
        while os.path.lexists(path):
            path = '%s-%d' % (base, counter)
            counter += 1
        return path

    def _chown(self, path, uid, gid):
        try:
            os.chown(path, uid, gid, follow_symlinks=False)
        except PermissionError:
            if (uid, gid) != (os.geteuid(), os.getegid()):
                msg = 'cannot set the owner of the files (not root); they belong to %s' % _owner_name(os.geteuid(), os.getegid())
                if msg not in self.warnings:
                    self.warnings.append(msg)

    def _stage_copy(self, action):
        st = action['src_st']
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(action['target']), prefix='.%s.' % os.path.basename(action['target']),
                                   suffix='.prefs_migrate')
        action['tmp'] = tmp
        digest = hashlib.sha256()
        try:
            src_fd = _paths.open_under(self.src, action['rel'], label='src')
        except _paths.PathEscape as exc:
            os.close(fd)
            raise PrefsError(str(exc)) from None
        with os.fdopen(fd, 'wb') as out, os.fdopen(src_fd, 'rb') as handle:
            while True:
                block = handle.read(CHUNK)
                if not block:
                    break
                digest.update(block)
                out.write(block)
        if sha256_file(tmp) != digest.hexdigest():
            raise PrefsError('%s: the copy does not match its source (sha256); nothing was replaced' % action['rel'])
        self._chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))

    def _stage_write(self, action):
        st = action['dest_st']
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(action['target']), prefix='.%s.' % os.path.basename(action['target']),
                                   suffix='.prefs_migrate')
        action['tmp'] = tmp
        with os.fdopen(fd, 'wb') as out:
            out.write(action['content'])
        if sha256_file(tmp) != hashlib.sha256(action['content']).hexdigest():
            raise PrefsError('%s: the merged file does not read back as written (sha256)' % action['rel'])
        self._chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))

    def _stage_link(self, action):
        folder, base = os.path.split(action['target'])
        for attempt in range(100):
            tmp = os.path.join(folder, '.%s.%d.%d.prefs_migrate' % (base, os.getpid(), attempt))
            try:
                os.symlink(action['text'], tmp)
            except FileExistsError:
                continue
            action['tmp'] = tmp
            return
        raise PrefsError('%s: cannot find a free temporary name for the symlink' % action['rel'])

    def _make_parents(self, target, created):
        # checked again right before writing: no folder on the way may have become a symlink leading out
        self._checked(self.dest, posixpath.dirname(norm_rel(os.path.relpath(target, self.dest))), 'dest')
        parent = os.path.dirname(target)
        missing = []
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for folder in reversed(missing):
            os.mkdir(folder, 0o700)
            created.append(folder)
            rel = os.path.relpath(folder, self.dest)
            src_folder = os.path.join(self.src, rel)
            if os.path.isdir(src_folder):
                sst = os.stat(src_folder)
                self._chown(folder, sst.st_uid, sst.st_gid)
                os.chmod(folder, stat.S_IMODE(sst.st_mode))
            else:
                os.chmod(folder, 0o755)

    def _backup(self, action, backup_root):
        self._checked(backup_root, posixpath.dirname(action['rel']), 'backup_dir')
        backup = os.path.join(backup_root, action['rel'])
        os.makedirs(os.path.dirname(backup), exist_ok=True)
        target = action['target']  # the entry itself: a symlink is kept as a symlink, never followed
        if action['kind'] != 'attrs':
            try:
                os.link(target, backup, follow_symlinks=False)
                action['backup'] = backup
                return
            except OSError:
                pass
        shutil.copy2(target, backup, follow_symlinks=False)
        st = action['dest_st']
        self._chown(backup, st.st_uid, st.st_gid)
        action['backup'] = backup

    def run(self):
        if not self.actions:
            return
        self.result['changed'] = True
        if self.module.check_mode:
            return
        backup_root = self._backup_root()
        made_backup_root = not os.path.isdir(backup_root)
        created_dirs = []
        committed = []
        try:
            for action in self.actions:
                if action['kind'] == 'attrs':
                    continue
                self._make_parents(action['target'], created_dirs)
                if action['kind'] == 'copy':
                    self._stage_copy(action)
                elif action['kind'] == 'link':
                    self._stage_link(action)
                else:
                    self._stage_write(action)
            os.makedirs(backup_root, exist_ok=True)
            for action in self.actions:
                if action['exists']:
                    self._backup(action, backup_root)
            self._write_manifest(backup_root, created_dirs)
            for action in self.actions:
                if action['kind'] == 'attrs':
                    st = action['src_st']
                    committed.append(action)
                    self._chown(action['target'], st.st_uid, st.st_gid)
                    os.chmod(action['target'], stat.S_IMODE(st.st_mode))
                    os.utime(action['target'], ns=(st.st_atime_ns, st.st_mtime_ns))
                else:
                    os.replace(action['tmp'], action['target'])
                    action.pop('tmp')
                    committed.append(action)
        except Exception as exc:  # pylint: disable=broad-except
            problems = self._rollback(committed, created_dirs, backup_root if made_backup_root else None)
            msg = 'prefs_migrate failed part-way and restored dest as it was: %s' % to_native(exc)
            if problems:
                msg = 'prefs_migrate failed part-way (%s) and could not restore everything: %s; the replaced files are in %s' % (
                    to_native(exc), '; '.join(problems), backup_root)
            raise PrefsError(msg)
        self.result['backup_dir'] = backup_root

    def _write_manifest(self, backup_root, created_dirs):
        manifest = dict(src=self.src, dest=self.dest, created_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                        replaced=[a['rel'] for a in self.actions if a['exists'] and a['kind'] != 'attrs'],
                        attributes_changed=[a['rel'] for a in self.actions if a['kind'] == 'attrs'],
                        created=[a['rel'] for a in self.actions if not a['exists']],
                        created_dirs=[os.path.relpath(d, self.dest) for d in created_dirs])
        path = os.path.join(backup_root, MANIFEST)
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(manifest, handle, indent=2)
            handle.write('\n')

    def _rollback(self, committed, created_dirs, backup_root):
        problems = []
        for action in reversed(committed):
            try:
                if action['kind'] == 'attrs':
                    st = action['dest_st']
                    self._chown(action['target'], st.st_uid, st.st_gid)
                    os.chmod(action['target'], stat.S_IMODE(st.st_mode))
                    os.utime(action['target'], ns=(st.st_atime_ns, st.st_mtime_ns))
                elif action['exists']:
                    restore = action['target'] + '.prefs_migrate-restore'
                    try:
                        os.link(action['backup'], restore, follow_symlinks=False)
                    except OSError:
                        shutil.copy2(action['backup'], restore, follow_symlinks=False)
                        st = action['dest_st']
                        self._chown(restore, st.st_uid, st.st_gid)
                    os.replace(restore, action['target'])
                else:
                    os.unlink(action['target'])
            except OSError as exc:
                problems.append('%s: %s' % (action['rel'], to_native(exc)))
        for action in self.actions:
            tmp = action.get('tmp')
            if tmp and os.path.lexists(tmp):
                try:
                    os.unlink(tmp)
                except OSError as exc:
                    problems.append('%s: %s' % (tmp, to_native(exc)))
        for folder in reversed(created_dirs):
            try:
                os.rmdir(folder)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT,):
                    problems.append('%s: %s' % (folder, to_native(exc)))
        if backup_root and not problems and os.path.isdir(backup_root):
            shutil.rmtree(backup_root, ignore_errors=True)
        return problems


def _owner_name(uid, gid):
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return '%s:%s' % (user, group)


def module_kwargs():
    """The keyword arguments of ``AnsibleModule`` for prefs_migrate (a new dict on every call)."""
    return dict(argument_spec=prefs_argument_spec(), supports_check_mode=True)


def run(module):
    """The whole behaviour of the module prefs_migrate; ends in ``module.exit_json`` or ``module.fail_json``.

    Uses only ``params``, ``check_mode``, ``_diff``, ``warn``, ``exit_json`` and ``fail_json`` of ``module``
    and keeps no state between calls, so another module may call it in its own process with an adapter
    whose ``exit_json``/``fail_json`` raise.
    """
    migration = Migration(module)
    try:
        migration.plan()
        migration.run()
    except (PrefsError, _paths.PathEscape) as exc:
        module.fail_json(msg=to_native(exc), **migration.result)
        return
    except (OSError, IOError) as exc:
        module.fail_json(msg='prefs_migrate: %s' % to_native(exc), **migration.result)
        return
    for warning in migration.warnings:
        module.warn(warning)
    result = migration.result
    if module._diff:
        result['diff'] = migration.diffs
    module.exit_json(**result)
