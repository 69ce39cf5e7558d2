# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered backend ``script``: the service's own start and stop commands."""

from __future__ import annotations

import os
import shlex
import signal

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils.service.backend import Backend, BackendError
from ansible_collections.clinops.upgrade.plugins.module_utils.service.procs import run_with_deadline, spawn_detached


class ScriptBackend(Backend):
    name = 'script'

    def __init__(self, module, svc, ctx):
        super().__init__(module, svc, ctx)
        self._proc = None

    def request_stop(self, seconds):
        if self.svc['stop_command']:
            argv = shlex.split(self.svc['stop_command'])
            rc, out = run_with_deadline(argv, seconds)
            if rc not in (0, None):
                raise BackendError('stop_command %s exited with %s: %s' % (self.svc['stop_command'], rc, out[-500:]))
            return
        for pid in self.ctx.known_pids(self.svc):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def request_start(self, seconds):
        argv = shlex.split(self.svc['start_command'])
        try:
            self._proc = spawn_detached(argv)
        except OSError as exc:
            raise BackendError('cannot run start_command %s: %s' % (self.svc['start_command'], to_native(exc))) from exc

    def start_failed(self):
        if self._proc is not None:
            rc = self._proc.poll()
            if rc not in (None, 0):
                return 'start_command %s exited with %s' % (self.svc['start_command'], rc)
        return None

    def describe(self):
        return ''
