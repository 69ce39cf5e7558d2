# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update backend ``sqlite``."""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.database import connect
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.backend import Backend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import LockTimeout


class SqliteBackend(Backend):
    """The whole run is one BEGIN EXCLUSIVE transaction (the lock); each migration is a SAVEPOINT in it.

    A failed migration is rolled back to its savepoint and the earlier ones are committed.
    """

    engine = 'sqlite'
    placeholder = '?'

    def open(self):
        self.conn = connect(self.params, autocommit=True)

    def history_exists(self):
        return self.query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,))[0][0] > 0

    def end_read(self):
        pass

    def lock(self):
        self.execute('PRAGMA busy_timeout = %d' % int(self.lock_timeout * 1000))
        try:
            self.execute('BEGIN EXCLUSIVE')
        except Exception as exc:  # pylint: disable=broad-except
            if 'locked' in str(exc) or 'busy' in str(exc):
                raise LockTimeout('another connection holds the SQLite database %s locked for longer than lock_timeout '
                                  '(%ss)' % (self.params['path'], self.lock_timeout)) from exc
            raise
        self.locked = True

    def commit(self):
        pass

    def prepare(self, plan, exists):
        self.execute('SAVEPOINT clinops_prepare')
        super().prepare(plan, exists)
        self.execute('RELEASE clinops_prepare')

    def apply(self, migration, dialect):
        self.execute('SAVEPOINT clinops_migration')
        try:
            return super().apply(migration, dialect)
        finally:
            self.execute('RELEASE clinops_migration')

    def rollback(self):
        self.execute('ROLLBACK TO clinops_migration')

    def unlock(self):
        if self.locked and self.conn.in_transaction:
            self.execute('COMMIT')
        self.locked = False
