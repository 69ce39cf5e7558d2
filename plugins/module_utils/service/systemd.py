# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered backend ``systemd``: ``systemctl`` and the unit's MainPID."""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.service.backend import Backend, BackendError


SYSTEMD_DIR = '/run/systemd/system'


class SystemdBackend(Backend):
    name = 'systemd'

    def _show(self):
        rc, out, err = self.module.run_command([self.ctx.bin('systemctl'), 'show', '--property=LoadState,ActiveState,SubState,MainPID',
                                                '--', self.svc['name']])
        if rc != 0:
            raise BackendError('systemctl show %s failed: %s' % (self.svc['name'], (err or out).strip()))
        props = {}
        for line in out.splitlines():
            key, dummy, value = line.partition('=')
            props[key] = value
        return props

    def check(self):
        if self._show().get('LoadState') in ('not-found', ''):
            return 'systemd has no unit %s' % self.svc['name']
        return None

    def running(self):
        return self._show().get('ActiveState') in ('active', 'activating', 'deactivating', 'reloading', 'refreshing')

    def up(self):
        return self._show().get('ActiveState') == 'active'

    def pids(self):
        pid = int(self._show().get('MainPID') or 0)
        return [pid] if pid else []

    def describe(self):
        props = self._show()
        return 'systemd state %s (%s)' % (props.get('ActiveState'), props.get('SubState'))

    def start_failed(self):
        if self._show().get('ActiveState') == 'failed':
            return 'systemd state failed'
        return None

    def _systemctl(self, *args):
        rc, out, err = self.module.run_command([self.ctx.bin('systemctl')] + list(args) + ['--', self.svc['name']])
        if rc != 0:
            raise BackendError('systemctl %s %s failed: %s' % (' '.join(args), self.svc['name'], (err or out).strip()))

    def request_stop(self, seconds):
        self._systemctl('stop', '--no-block')

    def request_start(self, seconds):
        self._systemctl('start', '--no-block')

    def kill(self):
        self._systemctl('kill', '--signal=SIGKILL')
        return True
