# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of upgrade_host_state: the module on a POSIX host, the same reading from the controller on Windows.

The host is judged as for upgrade_cutover (connection, shell, facts, ``clinops_upgrade_host_os``). A POSIX host runs
the module (one module execution). For a Windows host, :func:`host_state.read_state` - the module's own code - runs
here with a reader whose operations are ansible.windows calls: ``slurp`` (version file, journal, lock, checksum
file), ``win_stat`` (artifact with its sha256, prior installer, database file) and the engine's free-space script.
"""

from __future__ import annotations

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.clinops.upgrade.plugins.plugin_utils.dispatch import HostDispatchAction
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils.host_state import argument_spec, problems, read_state
from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import WindowsHost, native

MODULE = 'clinops.upgrade.upgrade_host_state'


class WindowsReader:
    """host_state's reader operations, each carried out with an ansible.windows module through a WindowsHost."""

    def __init__(self, host):
        self.host = host

    @staticmethod
    def parent(path):
        text = path.replace('\\', '/').rstrip('/')
        return text.rsplit('/', 1)[0] if '/' in text else text

    def read_text(self, path):
        return self.host.read_text(path)

    def stat(self, path, sha256):
        args = dict(path=native(path), follow=False, get_checksum=bool(sha256))
        if sha256:
            args['checksum_algorithm'] = 'sha256'
        res = self.host.call('ansible.windows.win_stat', args)
        if res.get('failed'):
            return dict(exists=False, isdir=False, size=0, checksum=None)
        found = res.get('stat') or {}
        return dict(exists=bool(found.get('exists')), isdir=bool(found.get('isdir')), size=int(found.get('size') or 0),
                    checksum=(found.get('checksum') or '').lower() or None if sha256 else None)

    def free_space(self, path):
        return self.host.free_space(path)

    def lock(self, lock_file, run_id, stale_after):
        raw = self.host.read_bytes(lock_file)
        holder = {}
        if raw is not None:
            try:
                holder = json.loads(raw.decode('utf-8'))
            except ValueError:
                holder = {'corrupt': True}
        available, reason = _journal.judge_lock(holder, raw is not None, run_id, stale_after)
        return dict(held=raw is not None, holder=holder, available=available, reason=reason)


class ActionModule(HostDispatchAction):

    TRANSFERS_FILES = False
    MODULE = MODULE

    def run_windows(self, task_vars):
        checked = ArgumentSpecValidator(argument_spec()).validate(dict(self._task.args))
        if checked.error_messages:
            return dict(failed=True, msg='invalid input, nothing was read: ' + '; '.join(checked.error_messages))
        params = checked.validated_parameters
        found = problems(params)
        if found:
            return dict(failed=True, msg='invalid input, nothing was read: ' + '; '.join(found))
        try:
            return read_state(params, WindowsReader(WindowsHost(self, task_vars)))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            return dict(failed=True, msg='cannot read the host state: %s' % getattr(exc, 'msg', exc))
