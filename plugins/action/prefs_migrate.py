# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for prefs_migrate: POSIX hosts run the module; Windows hosts are served from the controller.

On a Windows host (``plugin_utils/host_os.py``: the override variable, the facts, the connection or its shell) the files
are listed with ``ansible.windows.win_find``/``win_stat``, read with ``ansible.windows.slurp``, merged
here with the same engine the module uses (``module_utils/prefs/``), and written with
``ansible.windows.win_copy`` (``remote`` mode for copies between the roots, ``single`` mode for merged
content sent from the controller).  Windows has no rename-into-place over WinRM modules, so every file
that will be replaced is first copied into ``backup_dir`` and a failure part-way copies those back and
removes the files and folders this run created.  Each written file is checked with ``win_stat`` sha256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ntpath
import os
import tempfile
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.action import ActionBase

from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import is_windows
from ansible_collections.clinops.upgrade.plugins.module_utils.paths import PathEscape, check_option_path
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import DIFF_LIMIT, PrefsError, prefs_argument_spec
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.masking import file_diff, is_key_file
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.merge import merge
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.patterns import (
    check_item_path, is_inside, item_matches, literal_prefix, pattern_regex, resolve_format, select_files,
)

MODULE = 'clinops.upgrade.prefs_migrate'
MANIFEST = '.prefs_migrate-manifest.json'


def win_norm(path):
    return ntpath.normpath(path.replace('/', '\\')).rstrip('\\')


def win_key(path):
    """Windows paths compare case-insensitively."""
    return win_norm(path).lower()


def win_join(root, rel):
    return win_norm(root) + '\\' + rel.replace('/', '\\')


class ActionModule(ActionBase):

    TRANSFERS_FILES = True
    _VALID_ARGS = frozenset(('src', 'dest', 'items', 'defaults', 'backup_dir'))

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        if not is_windows(task_vars, self._connection, self._templar):
            result.update(self._execute_module(module_name=MODULE, module_args=self._task.args, task_vars=task_vars))
            return result
        try:
            dummy, args = self.validate_argument_spec(argument_spec=prefs_argument_spec())
            migration = WindowsMigration(self, args, task_vars)
            migration.plan()
            migration.run()
            result.update(migration.result)
            if self._task.diff:
                result['diff'] = migration.diffs
            if migration.warnings:
                result['warnings'] = migration.warnings
        except AnsibleActionFail as exc:
            result.update(failed=True, msg=to_native(exc))
        except PrefsError as exc:
            result.update(failed=True, msg=to_native(exc))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result


class WindowsMigration:
    """The module's plan and transaction, with every file operation a Windows module call."""

    def __init__(self, action, args, task_vars):
        self.action = action
        self.task_vars = task_vars
        self.check_mode = bool(action._task.check_mode)
        self.diff_mode = bool(action._task.diff)
        for option in ('src', 'dest', 'defaults', 'backup_dir'):
            try:
                check_option_path(args.get(option), option)  # before win_norm, which would fold the '..' away
            except PathEscape as exc:
                raise PrefsError(str(exc)) from None
        self.stats = {}  # win_key -> win_stat without following the last component
        self.src = win_norm(args['src'])
        self.dest = win_norm(args['dest'])
        self.defaults = win_norm(args['defaults']) if args.get('defaults') else None
        self.backup_dir = win_norm(args['backup_dir']) if args.get('backup_dir') else None
        self.items = [dict(item, path=check_item_path(item['path'].replace('\\', '/'))) for item in args['items']]
        self.actions = []
        self.result = dict(changed=False, copied=[], merged=[], kept=[], dropped_keys={}, missing=[], backup_dir=None)
        self.diffs = []
        self.warnings = []
        self.pushed = []

    # ---------------------------------------------------------------- module calls
    def call(self, name, args, fail=True):
        res = self.action._execute_module(module_name=name, module_args=args, task_vars=self.task_vars)
        if fail and res.get('failed'):
            raise PrefsError('%s failed: %s' % (name, res.get('msg', res)))
        return res

    def stat(self, path, checksum=False):
        args = dict(path=path, get_checksum=checksum, follow=False)
        if checksum:
            args['checksum_algorithm'] = 'sha256'
        return self.call('ansible.windows.win_stat', args).get('stat', {})

    def link_stat(self, path):
        """win_stat of ``path`` itself (a link is not followed), asked once per run."""
        key = win_key(path)
        if key not in self.stats:
            self.stats[key] = self.stat(path)
        return self.stats[key]

    def refuse_links_out(self, root, rel, label):
        """Look at every component of ``root\\rel`` on its own; refuse a symlink or junction leading outside ``root``.

        Windows follows a junction in the middle of a path silently, so each component is asked about by win_stat
        (``islnk``/``isjunction``, ``lnk_source``) one by one, from the root down.
        """
        root_key = win_key(root)
        parts = [p for p in rel.replace('\\', '/').split('/') if p not in ('', '.')]
        for index in range(1, len(parts) + 1):
            path = win_join(root, '/'.join(parts[:index]))
            st = self.link_stat(path)
            if not st.get('exists'):
                return
            if st.get('islnk') or st.get('isjunction'):
                target = st.get('lnk_source') or st.get('lnk_target') or ''
                if not ntpath.isabs(target):
                    target = ntpath.join(ntpath.dirname(path), target)
                if not is_inside(win_key(target), root_key):
                    raise PrefsError('%s %s: %s is a %s to %s, which leads outside %s; refused, nothing was written' % (
                        label, rel, '/'.join(parts[:index]), 'junction' if st.get('isjunction') else 'symlink', target, root))

    def read(self, path):
        res = self.call('ansible.windows.slurp', dict(src=path))
        return base64.b64decode(res['content'])

    def listing(self, root, label, pattern):
        """Regular files under root matching pattern: rel -> {size, mtime}; refuses escapes and special files."""
        regex = pattern_regex(pattern)
        start = literal_prefix(pattern)
        start_path = win_join(root, start) if start else root
        files = {}
        if start:
            self.refuse_links_out(root, start, label)
        top = self.stat(start_path)
        if not top.get('exists'):
            return files
        entries = []
        if top.get('isdir') and not top.get('islnk'):
            found = self.call('ansible.windows.win_find', dict(paths=[start_path], recurse=True, hidden=True, file_type='any',
                                                               follow=False, get_checksum=False))
            entries = found.get('files', [])
        else:
            entries = [dict(top, path=start_path)]
        root_key = win_key(root)
        for entry in entries:
            path = win_norm(entry['path'])
            self.stats.setdefault(win_key(path), dict(entry, exists=True))  # what refuse_links_out needs, without asking again
            rel = path[len(root_key) + 1:].replace('\\', '/') if win_key(path).startswith(root_key + '\\') else None
            if rel is None or not item_matches(regex, rel):
                continue
            if entry.get('islnk') or entry.get('isjunction'):
                target = entry.get('lnk_source') or entry.get('lnk_target') or ''
                if not ntpath.isabs(target):
                    target = ntpath.join(ntpath.dirname(path), target)
                if not is_inside(win_key(target), root_key):
                    raise PrefsError('%s %s is a link pointing outside %s (to %s); refused' % (label, rel, root, target))
                if entry.get('isdir'):
                    self.warnings.append('%s %s is a linked folder; its contents are not carried on Windows' % (label, rel))
                    continue
            if entry.get('isdir'):
                continue
            if not entry.get('isreg', True) and not entry.get('islnk'):
                raise PrefsError('%s %s is not a regular file; refused' % (label, rel))
            files[rel] = dict(size=entry.get('size'), mtime=entry.get('lastwritetime'))
        return files

    # ---------------------------------------------------------------- plan
    def check(self):
        keys = dict(src=win_key(self.src), dest=win_key(self.dest))
        if keys['src'] == keys['dest']:
            raise PrefsError('src and dest are the same folder (%s)' % self.src)
        if is_inside(keys['dest'], keys['src']):
            raise PrefsError('dest %s lies inside src %s; refused' % (self.dest, self.src))
        if is_inside(keys['src'], keys['dest']):
            raise PrefsError('src %s lies inside dest %s; refused' % (self.src, self.dest))
        if self.backup_dir:
            for label in ('src', 'dest'):
                if is_inside(win_key(self.backup_dir), keys[label]):
                    raise PrefsError('backup_dir %s lies inside %s; choose a folder outside both roots' % (self.backup_dir, label))
        for label, path in (('src', self.src), ('dest', self.dest), ('defaults', self.defaults)):
            if path is None:
                continue
            st = self.stat(path)
            if not st.get('exists'):
                raise PrefsError('%s %s does not exist' % (label, path))
            if not st.get('isdir'):
                raise PrefsError('%s %s is not a directory' % (label, path))

    def plan(self):
        self.check()
        src_files, dest_files = {}, {}
        for item in self.items:
            src_files.update(self.listing(self.src, 'src', item['path']))
            dest_files.update(self.listing(self.dest, 'dest', item['path']))
        selection, missing = select_files(self.items, src_files, dest_files)
        self.result['missing'] = missing
        required_missing = [i['path'] for i in self.items if i['required'] and i['path'] in missing]
        if required_missing:
            raise PrefsError('required item(s) not found in src %s: %s' % (self.src, ', '.join(required_missing)))
        for rel, item in selection.items():
            if item['mode'] == 'keep':
                if rel in dest_files:
                    self.result['kept'].append(rel)
                continue
            src_path, target = win_join(self.src, rel), win_join(self.dest, rel)
            self.refuse_links_out(self.src, rel, 'src')
            self.refuse_links_out(self.dest, rel, 'dest')
            if self.backup_dir and rel in dest_files:
                self.refuse_links_out(self.backup_dir, rel, 'backup_dir')
            if rel not in dest_files:
                dest_st = self.stat(target)
                if dest_st.get('exists'):
                    raise PrefsError('dest %s exists and is not a regular file; refused' % rel)
            if item['mode'] == 'merge' and rel in dest_files:
                self._plan_merge(rel, item, src_path, target)
                continue
            if item['mode'] == 'merge':
                resolve_format(item['format'], rel)
            self._plan_copy(rel, src_path, target, src_files[rel], dest_files.get(rel))

    def _plan_copy(self, rel, src_path, target, src_info, dest_info):
        src_sum = None
        if dest_info is not None:
            if src_info['size'] == dest_info['size'] and src_info['mtime'] == dest_info['mtime']:
                return
            if src_info['size'] == dest_info['size']:
                src_sum = self.stat(src_path, checksum=True).get('checksum')
                if src_sum == self.stat(target, checksum=True).get('checksum'):
                    return
        self.actions.append(dict(kind='copy', rel=rel, src=src_path, target=target, exists=dest_info is not None,
                                 checksum=src_sum, size=src_info['size']))
        self.result['copied'].append(rel)
        if self.diff_mode:
            key = is_key_file(rel)
            before = None if dest_info is None else self._diff_read(target, dest_info['size'], key)
            self.diffs.append(file_diff(rel, before, self._diff_read(src_path, src_info['size'], key), key_file=key))

    def _diff_read(self, path, size, key):
        if key or size is None or size > DIFF_LIMIT:
            return size or 0
        return self.read(path)

    def _plan_merge(self, rel, item, src_path, target):
        fmt = resolve_format(item['format'], rel)
        old = self.read(src_path)
        new = self.read(target)
        defaults = None
        if self.defaults is not None:
            default_path = win_join(self.defaults, rel)
            self.refuse_links_out(self.defaults, rel, 'defaults')
            st = self.stat(default_path)
            if st.get('exists') and not st.get('isdir'):
                defaults = self.read(default_path)
        merged, report = merge(fmt, old, new, defaults, rel)
        self.result['merged'].append(dict(path=rel, format=fmt, keys=report['keys'], added=report['added'], changed=report['changed']))
        if report['dropped']:
            self.result['dropped_keys'][rel] = report['dropped']
        if report['changed']:
            self.actions.append(dict(kind='write', rel=rel, target=target, content=merged, exists=True,
                                     checksum=hashlib.sha256(merged).hexdigest()))
            if self.diff_mode:
                self.diffs.append(file_diff(rel, new, merged))

    # ---------------------------------------------------------------- carry out
    def _mkdir(self, path, created):
        parts = []
        probe = ntpath.dirname(path)
        while probe and not self.stat(probe).get('exists'):
            parts.append(probe)
            parent = ntpath.dirname(probe)
            if parent == probe:
                break
            probe = parent
        for folder in reversed(parts):
            self.call('ansible.windows.win_file', dict(path=folder, state='directory'))
            created.append(folder)

    def _push(self, content, target):
        """Send bytes from the controller to ``target`` (win_copy single mode, as win_copy's action does)."""
        fd, local = tempfile.mkstemp(prefix='prefs_migrate-')
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(content)
            shell = self.action._connection._shell
            remote = shell.join_path(shell.tmpdir or self.action._make_tmp_path(), 'prefs_migrate-%d' % len(self.pushed))
            self.action._transfer_file(local, remote)
            self.pushed.append(remote)
        finally:
            os.unlink(local)
        self.call('ansible.windows.win_copy', dict(src=remote, dest=target, _original_basename=ntpath.basename(target),
                                                   _copy_mode='single'))

    def _verify(self, action):
        want = action.get('checksum')
        if want is None:
            want = self.stat(action['src'], checksum=True).get('checksum')
        got = self.stat(action['target'], checksum=True).get('checksum')
        if not want or (got or '').lower() != want.lower():
            raise PrefsError('%s: the written file does not match its source (sha256 %s, expected %s)' % (action['rel'], got, want))

    def run(self):
        if not self.actions:
            return
        self.result['changed'] = True
        if self.check_mode:
            return
        backup_root = self.backup_dir or '%s.prefs_backup-%s' % (self.dest, time.strftime('%Y%m%dT%H%M%S'))
        created_dirs = []
        done = []
        try:
            self.call('ansible.windows.win_file', dict(path=backup_root, state='directory'))
            for action in self.actions:
                if action['exists']:
                    backup = win_join(backup_root, action['rel'])
                    self._mkdir(backup, [])
                    self.call('ansible.windows.win_copy', dict(src=action['target'], dest=backup, remote_src=True, _copy_mode='remote'))
                    action['backup'] = backup
            manifest = dict(src=self.src, dest=self.dest, created_at=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                            replaced=[a['rel'] for a in self.actions if a['exists']],
                            created=[a['rel'] for a in self.actions if not a['exists']])
            self._push(to_bytes(json.dumps(manifest, indent=2) + '\n'), win_join(backup_root, MANIFEST))
            for action in self.actions:
                self._mkdir(action['target'], created_dirs)
                done.append(action)
                if action['kind'] == 'copy':
                    self.call('ansible.windows.win_copy', dict(src=action['src'], dest=action['target'], remote_src=True, _copy_mode='remote'))
                else:
                    self._push(action['content'], action['target'])
                self._verify(action)
        except PrefsError as exc:
            problems = self._rollback(done, created_dirs)
            if problems:
                raise PrefsError('prefs_migrate failed part-way (%s) and could not restore everything: %s; the replaced files are in %s'
                                 % (exc, '; '.join(problems), backup_root))
            raise PrefsError('prefs_migrate failed part-way and restored dest from %s: %s' % (backup_root, exc))
        self.result['backup_dir'] = backup_root

    def _rollback(self, done, created_dirs):
        problems = []
        for action in reversed(done):
            if action['exists']:
                res = self.call('ansible.windows.win_copy', dict(src=action['backup'], dest=action['target'], remote_src=True,
                                                                 _copy_mode='remote'), fail=False)
            else:
                res = self.call('ansible.windows.win_file', dict(path=action['target'], state='absent'), fail=False)
            if res.get('failed'):
                problems.append('%s: %s' % (action['rel'], res.get('msg')))
        for folder in reversed(created_dirs):
            res = self.call('ansible.windows.win_file', dict(path=folder, state='absent'), fail=False)
            if res.get('failed'):
                problems.append('%s: %s' % (folder, res.get('msg')))
        return problems
