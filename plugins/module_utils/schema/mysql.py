# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update backend ``mysql`` (MySQL and MariaDB)."""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.database import describe_error
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.backend import Backend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import LockTimeout, MigrationFailed


class MysqlBackend(Backend):
    engine = 'mysql'
    transactional = False
    columns_sql = Backend.columns_sql.replace('DOUBLE PRECISION', 'DOUBLE')

    def history_exists(self):
        return self.query('SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() '
                          'AND table_name = %s', (self.table,))[0][0] > 0

    def create_history(self):
        self.execute('CREATE TABLE %s (%s) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4' % (self.table, self.columns_sql))

    def lock_name(self):
        return 'clinops_schema_update_' + self.lock_key()[:40]

    def lock(self):
        got = self.query('SELECT GET_LOCK(%s, %s)', (self.lock_name(), self.lock_timeout))[0][0]
        if got != 1:
            raise LockTimeout('another schema update holds the lock on this database (GET_LOCK %s) for longer than '
                              'lock_timeout (%ss)' % (self.lock_name(), self.lock_timeout))
        self.locked = True

    def unlock(self):
        if self.locked:
            self.query('SELECT RELEASE_LOCK(%s)', (self.lock_name(),))
        self.locked = False

    def failed(self, migration, statement, exc, duration):
        # DDL committed itself: record the failure so that later runs stop until repair.
        self.insert_row(migration.version.text, migration.description, migration.checksum, migration.phase,
                        duration, False)
        self.commit()
        return MigrationFailed(migration, statement, describe_error(exc), recorded=True, rolled_back=False)
