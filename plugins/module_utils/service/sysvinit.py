# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered backend ``sysvinit``: the service's script in ``/etc/init.d``."""

from __future__ import annotations

import os

from ansible_collections.clinops.upgrade.plugins.module_utils.service.backend import Backend, BackendError
from ansible_collections.clinops.upgrade.plugins.module_utils.service.procs import run_with_deadline


INIT_D = '/etc/init.d'


class SysvinitBackend(Backend):
    name = 'sysvinit'

    def _argv(self, action):
        service = self.ctx.bin('service', required=False)
        if service:
            return [service, self.svc['name'], action]
        return [os.path.join(INIT_D, self.svc['name']), action]

    def check(self):
        if not os.path.exists(os.path.join(INIT_D, self.svc['name'])):
            return 'there is no init script %s' % os.path.join(INIT_D, self.svc['name'])
        return None

    def _status(self):
        rc, dummy_out, dummy_err = self.module.run_command(self._argv('status'))
        return rc

    def running(self):
        return self._status() == 0

    def up(self):
        return self._status() == 0

    def describe(self):
        return '%s status exit code %s' % (self.svc['name'], self._status())

    def request_stop(self, seconds):
        rc, out = run_with_deadline(self._argv('stop'), seconds)
        if rc not in (0, None):
            raise BackendError('%s stop exited with %s: %s' % (' '.join(self._argv('stop')), rc, out[-500:]))

    def request_start(self, seconds):
        rc, out = run_with_deadline(self._argv('start'), seconds)
        if rc is None:
            raise BackendError('%s did not return within %s s' % (' '.join(self._argv('start')), seconds))
        if rc != 0:
            raise BackendError('%s exited with %s: %s' % (' '.join(self._argv('start')), rc, out[-500:]))
