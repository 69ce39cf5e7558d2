#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: prefs_migrate
short_description: Carry a site's settings from the old installation into the new one
version_added: 0.1.0
description:
  - Copies, keeps or merges configuration files from the old installation root O(src) into the new
    installation root O(dest), as the vendors' upgrade procedures ask (PMOD imports the properties of the
    old installation; ConAktiv carries C(Server Database/Preferences), C(cert.pem), C(key.pem) and
    C(Server Database/Resources/Hunspell) into the new server folder).
  - A merge keeps every value the site changed, takes the keys the new release added with their new
    defaults, and reports the keys the new release dropped. A value counts as changed when it differs
    from the old release's pristine file in O(defaults); without O(defaults) every old value counts as
    changed. A key the old file has and the new one lacks is reported in RV(dropped_keys), unless
    O(defaults) shows that the site added it, then it is carried over.
  - Comments, order, encoding and line endings of the new file are kept. Java properties are read as
    ISO-8859-1 with C(\uXXXX) escapes; only the value part of a changed line is rewritten.
  - Everything is checked before anything is written (paths, symlinks, special files, required items,
    every file to merge is parsed). Files are staged as temporary files beside their targets, verified
    by sha256 against their source, and renamed into place at the end; a failure part-way restores
    O(dest) as it was.
  - Every file of O(dest) that is replaced is kept first in O(backup_dir), with a manifest
    C(.prefs_migrate-manifest.json) listing the files replaced and created, so the step can be undone.
  - A second run changes nothing. Unchanged copies are recognised by size and modification time before
    any hashing, so a rerun with nothing to do is cheap.
  - On Windows hosts the action plugin of the same name fetches the files, merges them on the controller
    with the same code, and moves files with M(ansible.windows.win_copy) and M(ansible.windows.win_file).
author:
  - clinops.upgrade developers (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - One before/after entry per file. Values of keys that look like passwords, secrets, tokens or
        keys are masked, private key files are never shown, and binary or large files are summarised.
  platform:
    platforms: [posix, windows]
    details:
      - On Windows the action plugin does the work through ansible.windows modules.
options:
  src:
    description:
      - Root of the old installation, for example C(/opt/ConAktiv Server_old0001) or C(C:\PMOD4.4).
      - Must exist; may neither contain O(dest) nor lie inside it.
    type: path
    required: true
  dest:
    description:
      - Root of the new installation. Must exist (the installer has run).
    type: path
    required: true
  items:
    description:
      - What to carry over. Each file is handled by the B(last) item whose path matches it, so a broad
        item can be followed by narrower exceptions.
      - An item that matches nothing is reported in RV(missing), or fails the task when O(items[].required).
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - A file or folder relative to O(src) and O(dest), with C(/) separators; a folder stands for
            everything below it.
          - Wildcards C(*), C(?) and C([...]) match inside one path segment, C(**) any number of segments.
          - Absolute paths and C(..) are refused; so are symlinks pointing outside their root and special files.
        type: str
        required: true
      mode:
        description:
          - V(copy) takes the old file. V(keep) leaves the new one as it is. V(merge) merges keys into the
            new file (when the new release has no such file, the old one is copied).
        type: str
        default: copy
        choices: [copy, keep, merge]
      format:
        description:
          - The file format for O(items[].mode=merge).
          - V(auto) picks it from the extension (C(.properties), C(.prefs) properties; C(.ini), C(.cfg),
            C(.conf) ini; C(.json) json; C(.xml), C(.config), C(.plist) xml); another extension fails.
          - V(json) and V(xml) keys are paths such as C(server/port) and C(map/entry[@key='cache']/@value).
        type: str
        default: auto
        choices: [auto, properties, ini, json, xml]
      required:
        description:
          - Fail, before anything is written, when the item matches nothing in O(src).
        type: bool
        default: false
  defaults:
    description:
      - A folder with the old release's pristine files, laid out like O(src), used to tell a value the
        site customised from an old default. An old default is not carried over, so the new release's
        default wins.
    type: path
  backup_dir:
    description:
      - Where the files of O(dest) that get replaced are kept, laid out like O(dest).
      - Default a new folder beside O(dest) named C(<dest>.prefs_backup-<YYYYmmddTHHMMSS>), created only
        when something changes.
      - May not lie inside O(src) or O(dest).
    type: path
notes:
  - INI keys and sections are compared case-insensitively; a duplicate key or section is refused as ambiguous.
  - JSON files that change are written again with the indent, separators, line ending and encoding
    detected from the new file; JSON has no comments to keep.
  - XML is edited in place at the byte positions the parser reports; UTF-16 and multi-byte encodings
    other than UTF-8 are refused (use V(copy) or V(keep)).
  - Files are not fsynced one by one; the rename at the end is atomic per file.
  - Unchanged copies are recognised by equal size and modification time, as rsync does; files with equal
    size and different times are compared by sha256.
  - Copied files take the mode, owner and times of the old file (like C(cp -a)); merged files keep the
    mode and owner of the new file. Private keys are staged with mode 0600 and keep their mode.
  - On Windows, files are written with M(ansible.windows.win_copy) and take the ACLs of their folder;
    each file that will be replaced is copied into O(backup_dir) first and copied back if a later step
    fails (there is no rename into place over WinRM). Folder links inside a root are not descended there.
    The Windows path is tested by unit tests that replace the ansible.windows module calls with a fake
    host, since PowerShell cannot run in this collection's CI.
seealso:
  - module: ansible.windows.win_copy
"""

EXAMPLES = r"""
- name: Carry ConAktiv's preferences, certificates and dictionaries into the new server folder
  clinops.upgrade.prefs_migrate:
    src: /srv/ConAktiv Server_old0001
    dest: /srv/ConAktiv Server
    items:
      - path: Server Database/Preferences
        mode: copy
        required: true
      - path: Server Database/cert.pem
      - path: Server Database/key.pem
      - path: Server Database/Resources/Hunspell

- name: Import PMOD's properties from the old installation, keeping site changes only
  clinops.upgrade.prefs_migrate:
    src: C:\PMOD4.3
    dest: C:\PMOD4.4
    defaults: C:\clinops\pristine\PMOD4.3
    items:
      - path: properties/**/*.properties
        mode: merge
        required: true
      - path: properties/license.properties
        mode: keep
  register: pmod_props

- name: Show what was carried over
  ansible.builtin.debug:
    msg: "{{ pmod_props.merged | map(attribute='keys') | list }}; dropped: {{ pmod_props.dropped_keys }}"
"""

RETURN = r"""
copied:
  description: Files (relative to O(dest)) replaced or created from O(src), or whose mode and owner were set from it.
  returned: always
  type: list
  elements: str
  sample: [Server Database/cert.pem, Server Database/key.pem]
merged:
  description: One entry per merged file.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file, relative to O(dest).
      type: str
    format:
      description: The format it was merged as.
      type: str
    keys:
      description: The keys whose value was taken from the old file (customised or added by the site).
      type: list
      elements: str
    added:
      description: The keys the new release added, kept with their new defaults.
      type: list
      elements: str
    changed:
      description: Whether the new file had to be changed.
      type: bool
  sample: [{path: properties/server.properties, format: properties, keys: [server.port], added: [cache.mode], changed: true}]
kept:
  description: Files left as the new release has them (O(items[].mode=keep)).
  returned: always
  type: list
  elements: str
dropped_keys:
  description: Per merged file, the keys of the old file the new release no longer has (not written).
  returned: always
  type: dict
  sample: {properties/server.properties: [legacy.cache]}
missing:
  description: Item paths that matched nothing in O(src).
  returned: always
  type: list
  elements: str
backup_dir:
  description: The folder holding the replaced files and the manifest C(.prefs_migrate-manifest.json); null when nothing changed.
  returned: always
  type: str
  sample: /srv/ConAktiv Server.prefs_backup-20250101T120000
"""

import errno
import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import (
    DIFF_LIMIT, PrefsError, check_item_path, file_diff, is_inside, is_key_file, item_matches, literal_prefix,
    merge, pattern_regex, prefs_argument_spec, resolve_format, select_files,
)

CHUNK = 1024 * 1024
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
    """Finds the regular files an item matches under one root, refusing what may not be touched."""

    def __init__(self, root, label):
        self.root = root
        self.real = os.path.realpath(root)
        self.label = label
        self.files = {}  # rel -> os.stat_result (symlinks inside the root followed)

    def _resolve(self, path, rel):
        real = os.path.realpath(path)
        if not is_inside(real, self.real):
            raise PrefsError('%s %s is a symlink pointing outside %s (to %s); refused' % (self.label, rel, self.root, real))
        return real

    def scan(self, pattern):
        """Add the files matching ``pattern`` to ``self.files``."""
        regex = pattern_regex(pattern)
        segments = pattern.split('/')
        depth_limit = None if '**' in segments else len(segments)
        start = literal_prefix(pattern)
        start_path = os.path.join(self.root, start) if start else self.root
        if not os.path.lexists(start_path):
            return
        visited = set()
        stack = [(start, start_path)]
        while stack:
            rel, path = stack.pop()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                real = self._resolve(path, rel or '.')
                st = os.stat(real)
            matched = bool(rel) and item_matches(regex, rel)
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


def _read(path, limit, rel):
    size = os.path.getsize(path)
    if size > limit:
        raise PrefsError('%s is %d bytes, too large to merge; use mode copy' % (rel, size))
    with open(path, 'rb') as handle:
        return handle.read()


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

    def plan(self):
        self.check()
        src_tree = Tree(self.src, 'src')
        dest_tree = Tree(self.dest, 'dest')
        for item in self.items:
            src_tree.scan(item['path'])
            if item['mode'] == 'keep':
                dest_tree.scan(item['path'])
        selection, missing = select_files(self.items, src_tree.files, dest_tree.files)
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
            dest_st = self._dest_stat(rel, target, dest_real)
            src_path = os.path.join(self.src, rel)
            src_st = src_tree.files[rel]
            if item['mode'] == 'merge' and dest_st is not None:
                self._plan_merge(rel, item, src_path, target, dest_st)
            else:
                if item['mode'] == 'merge':
                    resolve_format(item['format'], rel)
                self._plan_copy(rel, src_path, src_st, target, dest_st)

    def _dest_stat(self, rel, target, dest_real):
        """Stat of the target in dest (None when absent); refuses escapes, folders and special files there."""
        parent = os.path.dirname(target)
        probe = parent
        while not os.path.lexists(probe):
            probe = os.path.dirname(probe)
        if not is_inside(os.path.realpath(probe), dest_real):
            raise PrefsError('dest %s: a folder on the way is a symlink pointing outside %s; refused' % (rel, self.dest))
        if not os.path.isdir(probe):
            raise PrefsError('dest %s: %s is not a directory' % (rel, probe))
        if not os.path.lexists(target):
            return None
        real = os.path.realpath(target)
        if not is_inside(real, dest_real):
            raise PrefsError('dest %s is a symlink pointing outside %s (to %s); refused' % (rel, self.dest, real))
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise PrefsError('dest %s is a %s where src has a file; refused' % (rel, _kind(st.st_mode)))
        return st

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

    def _plan_merge(self, rel, item, src_path, target, dest_st):
        fmt = resolve_format(item['format'], rel)
        old = _read(src_path, MERGE_LIMIT, rel)
        new = _read(target, MERGE_LIMIT, rel)
        defaults = None
        if self.defaults is not None:
            default_path = os.path.join(self.defaults, rel)
            if os.path.isfile(default_path):
                if not is_inside(os.path.realpath(default_path), os.path.realpath(self.defaults)):
                    raise PrefsError('defaults %s is a symlink pointing outside %s; refused' % (rel, self.defaults))
                defaults = _read(default_path, MERGE_LIMIT, rel)
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
        with os.fdopen(fd, 'wb') as out, open(action['src'], 'rb') as handle:
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

    def _make_parents(self, target, created):
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
        backup = os.path.join(backup_root, action['rel'])
        os.makedirs(os.path.dirname(backup), exist_ok=True)
        target = os.path.realpath(action['target'])
        if action['kind'] != 'attrs':
            try:
                os.link(target, backup, follow_symlinks=False)
                action['backup'] = backup
                return
            except OSError:
                pass
        shutil.copy2(target, backup)
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
                        os.link(action['backup'], restore)
                    except OSError:
                        shutil.copy2(action['backup'], restore)
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


def main():
    module = AnsibleModule(argument_spec=prefs_argument_spec(), supports_check_mode=True)
    migration = Migration(module)
    try:
        migration.plan()
        migration.run()
    except PrefsError as exc:
        module.fail_json(msg=to_native(exc), **migration.result)
    except (OSError, IOError) as exc:
        module.fail_json(msg='prefs_migrate: %s' % to_native(exc), **migration.result)
    for warning in migration.warnings:
        module.warn(warning)
    result = migration.result
    if module._diff:
        result['diff'] = migration.diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
