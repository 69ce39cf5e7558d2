# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update backend ``postgresql``."""

from __future__ import annotations

import time

from ansible_collections.clinops.upgrade.plugins.module_utils.schema.backend import Backend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import LockTimeout


class PostgresBackend(Backend):
    engine = 'postgresql'

    def history_exists(self):
        return self.query('SELECT to_regclass(%s) IS NOT NULL', (self.table,))[0][0]

    def lock(self):
        key = int(self.lock_key()[:15], 16)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            got = self.query('SELECT pg_try_advisory_lock(%s)', (key,))[0][0]
            self.conn.commit()
            if got:
                self.locked = True
                return
            if time.monotonic() >= deadline:
                raise LockTimeout('another schema update holds the lock on this database (PostgreSQL advisory lock %d) '
                                  'for longer than lock_timeout (%ss)' % (key, self.lock_timeout))
            time.sleep(0.1)

    def unlock(self):
        if self.locked:
            self.query('SELECT pg_advisory_unlock(%s)', (int(self.lock_key()[:15], 16),))
            self.conn.commit()
        self.locked = False
