# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update backend ``firebird``."""

from __future__ import annotations

from ansible_collections.clinops.upgrade.plugins.module_utils.schema.sql import is_commit
from ansible_collections.clinops.upgrade.plugins.module_utils.database import describe_error
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.backend import Backend
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.plan import LockTimeout, MigrationFailed


class FirebirdBackend(Backend):
    """Each migration in one transaction; ``COMMIT [WORK]`` in a file is a commit point.

    Firebird cannot use a table in the transaction that created it, so scripts commit between DDL and
    DML; a failure after a commit point cannot be rolled back whole and is recorded as failed.
    The lock is an uncommitted UPDATE of the one row of ``<history_table>_lock`` in a second transaction
    that waits at most lock_timeout; the server rolls it back when the connection dies.
    """

    engine = 'firebird'
    placeholder = '?'

    def __init__(self, *args):
        super().__init__(*args)
        self.lock_tm = None
        self.committed_part = False

    def lock_table(self):
        return self.table + '_lock'

    def relation_exists(self, name):
        rows = self.query('SELECT COUNT(*) FROM rdb$relations WHERE rdb$relation_name = ?', (name.upper(),))
        return rows[0][0] > 0

    def history_exists(self):
        return self.relation_exists(self.table)

    def commit(self):
        if self.conn.main_transaction.is_active():
            self.conn.commit()

    def rollback(self):
        if self.conn.main_transaction.is_active():
            self.conn.rollback()

    def end_read(self):
        self.commit()

    def lock(self):
        # pylint: disable=import-outside-toplevel
        from firebird.driver import DefaultAction, Isolation, tpb
        if not self.relation_exists(self.lock_table()):
            try:
                self.execute('CREATE TABLE %s (id INTEGER NOT NULL PRIMARY KEY, locked_at TIMESTAMP)' % self.lock_table())
                self.commit()
            except Exception:  # pylint: disable=broad-except
                self.rollback()  # another run created it meanwhile
        if not self.query('SELECT COUNT(*) FROM %s WHERE id = 1' % self.lock_table())[0][0]:
            try:
                self.execute('INSERT INTO %s (id) VALUES (1)' % self.lock_table())
                self.commit()
            except Exception:  # pylint: disable=broad-except
                self.rollback()
        self.commit()
        self.lock_tm = self.conn.transaction_manager(
            tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=max(0, int(self.lock_timeout))),
            DefaultAction.ROLLBACK)
        self.lock_tm.begin()
        cur = self.lock_tm.cursor()
        try:
            cur.execute('UPDATE %s SET locked_at = CURRENT_TIMESTAMP WHERE id = 1' % self.lock_table())
        except Exception as exc:  # pylint: disable=broad-except
            self.lock_tm.rollback()
            self.lock_tm = None
            raise LockTimeout('another schema update holds the lock on this database (a row of %s) for longer than '
                              'lock_timeout (%ss): %s' % (self.lock_table(), self.lock_timeout, describe_error(exc))) from exc
        finally:
            cur.close()
        self.locked = True

    def unlock(self):
        if self.lock_tm is not None:
            self.lock_tm.rollback()
            self.lock_tm.close()
            self.lock_tm = None
        self.locked = False

    def apply(self, migration, dialect):
        self.committed_part = False
        return super().apply(migration, dialect)

    def run_statement(self, statement):
        if is_commit(statement):
            self.commit()
            self.committed_part = True
        else:
            self.execute(statement.sql)

    def failed(self, migration, statement, exc, duration):
        if not self.committed_part:
            return MigrationFailed(migration, statement, describe_error(exc))
        self.insert_row(migration.version.text, migration.description, migration.checksum, migration.phase,
                        duration, False)
        self.commit()
        return MigrationFailed(migration, statement, describe_error(exc), recorded=True, rolled_back=False)
