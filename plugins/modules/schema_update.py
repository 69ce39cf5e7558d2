#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: schema_update
short_description: Bring a database's schema to the release's version once, safely
version_added: 0.1.0
author:
  - clinops.upgrade contributors (@clinops)
description:
  - Applies versioned SQL migration files in order and records them in a history table (O(migrations)),
    or runs a vendor's own schema upgrade tool and judges the result from the version the database reports
    before and after (O(command)).
  - "Migration files are named C(V<version>__<description>.sql). Versions are compared block by block as numbers
    (C(6.0.10) is newer than C(6.0.9)); C(.) and C(_) both separate blocks, missing blocks count as zero. Every
    C(*.sql) file in the folder must follow the pattern; other files are ignored."
  - "A file may declare its phase in its leading comment lines: C(-- phase: pre) (safe while the old version
    still runs: expand), C(-- phase: offline) (needs the downtime; the default) or C(-- phase: post) (runs after
    the new version started: contract). The header is the run of blank and C(--) lines at the top of the file."
  - Before anything is applied the module checks everything it can - the file names, duplicate versions,
    the connection, the checksums (SHA-256, line endings normalised) of the files already applied, the target,
    downgrades, a database newer than the release, failed entries left by an earlier run, the phase order,
    and that every pending file splits into statements.
  - "Concurrent runs are serialised by a lock that dies with the connection: a PostgreSQL advisory lock
    (C(pg_try_advisory_lock), polled), MariaDB/MySQL C(GET_LOCK), an SQLite C(BEGIN EXCLUSIVE) transaction
    that holds the whole run (each migration is a savepoint in it), and on Firebird an uncommitted update of
    the one row of C(<history_table>_lock) in a transaction with a lock timeout. A run waits at most
    O(lock_timeout) seconds for it."
  - Each migration runs in its own transaction on PostgreSQL, SQLite and Firebird, and is rolled back whole
    when a statement fails. MariaDB/MySQL commit DDL implicitly; there a failed migration is recorded as failed
    and every later run refuses until O(repair).
  - "Statements are split on C(;) outside strings, quoted identifiers, comments and PostgreSQL dollar quotes.
    Firebird C(SET TERM) and MySQL C(DELIMITER) change the terminator. Procedure, function, trigger, package
    and event bodies (and Firebird C(EXECUTE BLOCK)) without a changed terminator run to the C(END) that closes
    their outermost C(BEGIN). psql meta-commands are refused. A MySQL routine whose body has no C(BEGIN) ends
    at its first C(;) (use C(DELIMITER))."
  - Transaction control statements (C(BEGIN), C(COMMIT)...) are refused in PostgreSQL and SQLite files, since
    each file already is one transaction. In Firebird files C(COMMIT) or C(COMMIT WORK) is a commit point
    (Firebird cannot use a table in the transaction that created it); a failure after a commit point is
    recorded as failed, like on MariaDB.
extends_documentation_fragment:
  - clinops.upgrade.database
  - clinops.upgrade.attributes
options:
  migrations:
    description:
      - Folder of the C(V<version>__<description>.sql) files, on the managed host.
      - A path with a C(..) component is refused; so is a migration file that is a symlink leading outside the folder
        (it is never read).
      - Needs O(engine) V(postgresql), V(mysql), V(sqlite) or V(firebird).
      - Mutually exclusive with O(command).
    type: path
  command:
    description:
      - The vendor's schema upgrade tool, as an argument list, or a string split like a shell would split it
        (no shell runs it, so no pipes, redirections or variables). A bare program name is searched in the PATH.
      - The tool's exit code alone decides nothing. The database's version is read with O(version_query) or
        O(version_command) before and after; the task changed when it differs, and fails when O(target) is
        set and was not reached, or when the version went down.
      - With O(target) set and the database already there, the tool is not run.
      - Mutually exclusive with O(migrations); needs O(version_query) or O(version_command).
    type: raw
  version_query:
    description:
      - In O(command) mode, an SQL query whose first column of the first row is the database's version
        (no row or NULL means no version yet). It runs on the connection given by the connection options, so
        O(engine) must be V(postgresql), V(mysql), V(sqlite), V(firebird) or V(mssql).
      - For V(mssql) the query runs through C(sqlcmd) on the managed host (found in PATH), as
        C(SET NOCOUNT ON; USE [database]; <query>), with Windows authentication, or a SQL login whose password
        reaches C(sqlcmd) in C(SQLCMDPASSWORD) (never on its command line). C(sqlcmd) prints SQL NULL as C(NULL),
        which counts as no version.
    type: str
  version_command:
    description:
      - In O(command) mode, a command (argument list or string, no shell) that prints the database's version
        on its standard output (surrounding white space ignored; empty output means no version yet).
      - No database connection is opened, so O(engine) can be any value (V(files) for an embedded database).
    type: raw
  command_timeout:
    description:
      - Seconds the O(command) may run; then its whole process group is killed and the task fails with the
        version read afterwards. V(0) means no limit.
    type: int
    default: 0
  target:
    description:
      - The version to bring the database to. It must be the version of a migration file (or the baseline).
      - Unset means the newest migration file; in O(command) mode, whatever version the tool reaches.
      - A target older than the database is refused (no downgrades).
    type: str
  baseline:
    description:
      - Adopt an existing database at this version without running the files up to it. Used only when the
        history table is absent or empty; it is then recorded as a baseline entry. Otherwise it is ignored
        with a warning when it differs from the recorded baseline.
    type: str
  repair:
    description:
      - Remove the failed entries from the history (left by a failed migration on MariaDB/MySQL, or after a
        Firebird commit point), then run as usual, so that the fixed file is applied again.
      - Fix the database by hand first; the module cannot know what part of the failed file took effect.
    type: bool
    default: false
  lock_timeout:
    description:
      - Seconds to wait for the lock held by another run before failing.
    type: int
    default: 60
  major_blocks:
    description:
      - How many leading blocks of a version decide whether a change is major (KSAMU's four-block versions
        carry the database scripts' version in the first three blocks, so V(3)). Only reported in RV(kind).
    type: int
    default: 1
  phase:
    description:
      - Which migrations to apply. V(all) applies every pending migration in version order.
      - V(pre), V(offline) and V(post) apply only the files of that phase; a phase refuses to run while files
        of an earlier phase up to the target are still pending (pre before offline before post).
    type: str
    choices: [all, pre, offline, post]
    default: all
  history_table:
    description:
      - The table that records the applied migrations (version, description, phase, checksum, applied_at,
        duration, success). Created when absent. A plain identifier; C(schema.table) on PostgreSQL.
    type: str
    default: clinops_schema_history
attributes:
  check_mode:
    support: full
    details:
      - Reads the history and reports RV(pending), RV(from_version), RV(to_version) and RV(kind) without taking
        the lock or writing anything. In O(command) mode the tool is not run; without O(target) no change is
        predicted.
  diff_mode:
    support: full
    details:
      - The SQL of the migrations that run (or would run).
  platform:
    platforms: posix
notes:
  - Engines V(files) and V(mssql) are refused in O(migrations) mode; V(files) also with O(version_query).
  - SQL Server cannot run where this collection is tested; the V(mssql) version query is tested against a C(sqlcmd)
    double that refuses options the real C(sqlcmd) does not have (see docs/DATABASES.md).
  - The history table, the Firebird lock table and the lock name depend on O(history_table), so two
    applications can keep separate histories in one database.
  - Old migration files may be removed from the folder once applied; their history entries are then not
    checked. An applied entry newer than every file means the database is newer than the release and is refused.
requirements:
  - psycopg 3 (postgresql), PyMySQL (mysql), firebird-driver (firebird) on the managed host.
  - C(sqlcmd) (mssql-tools18 or go-sqlcmd) on the managed host for O(version_query) with V(mssql).
seealso:
  - name: Flyway schema history
    description: The design this module's history table and checksums follow.
    link: https://documentation.red-gate.com/flyway
"""

EXAMPLES = r"""
- name: Show what the release's migrations would do
  clinops.upgrade.schema_update:
    engine: postgresql
    database: pacs
    login_host: 127.0.0.1
    login_user: pacs
    login_password: "{{ vault_pacs_password }}"
    migrations: /opt/pacs/release/sql
  check_mode: true
  diff: true
  register: schema_plan

- name: Apply the online-safe part before the stop
  clinops.upgrade.schema_update:
    engine: postgresql
    database: pacs
    migrations: /opt/pacs/release/sql
    phase: pre

- name: Apply the downtime part (KSAMU versions, three blocks decide major)
  clinops.upgrade.schema_update:
    engine: mysql
    database: ksamu
    login_user: ksamu
    login_password: "{{ vault_ksamu_password }}"
    migrations: /opt/ksamu/scripts
    phase: offline
    major_blocks: 3
    lock_timeout: 300

- name: Adopt a database that was upgraded by hand up to 6.0.50
  clinops.upgrade.schema_update:
    engine: sqlite
    path: /var/lib/app/app.db
    migrations: /opt/app/sql
    baseline: 6.0.50

- name: Clear a failed MariaDB migration after fixing the database and the file
  clinops.upgrade.schema_update:
    engine: mysql
    database: ksamu
    migrations: /opt/ksamu/scripts
    repair: true

- name: Upgrade Orthanc's index with its own tool; judge by the index's schema version
  clinops.upgrade.schema_update:
    engine: sqlite
    path: /var/lib/orthanc/db-v6/index
    command: [Orthanc, /etc/orthanc/orthanc.json, --upgrade]
    version_query: SELECT value FROM GlobalProperties WHERE property = 1
    target: "6"
    command_timeout: 3600
"""

RETURN = r"""
from_version:
  description:
    - The database's version before the run - the highest version up to which every migration is applied
      (or the baseline) - or in O(command) mode the version read before. Null for a database without any.
  returned: always
  type: str
  sample: 6.0.50
to_version:
  description:
    - The version after the run (predicted in check mode), computed like RV(from_version).
  returned: always
  type: str
  sample: 6.0.52
target:
  description: The version the run aimed at (null in O(command) mode without O(target)).
  returned: always
  type: str
  sample: 6.0.52
kind:
  description:
    - V(major) when the first O(major_blocks) blocks differ between RV(from_version) and the target,
      V(minor) when only later blocks differ, V(none) when nothing up to the target is pending (in any phase).
    - A database without a version going to one is V(major).
  returned: always
  type: str
  sample: major
applied:
  description: The migrations applied by this run, in order (in O(command) mode, one entry for the tool when the version changed).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.51, description: add study index, phase: offline, file: V6.0.51__add_study_index.sql, duration_s: 0.042}]
pending:
  description: The migrations this run applies, or in check mode would apply (version, description, phase, file).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.51, description: add study index, phase: offline, file: V6.0.51__add_study_index.sql}]
remaining:
  description: The migrations up to the target that are still not applied after this run (other phases, or the failed one and those after it).
  returned: always
  type: list
  elements: dict
  sample: [{version: 6.0.52, description: drop old column, phase: post, file: V6.0.52__drop_old_column.sql}]
repaired:
  description: The versions whose failed entries O(repair) removed (or would remove).
  returned: always
  type: list
  elements: str
  sample: [6.0.51]
baseline:
  description: The baseline version this run recorded (or would record); null otherwise.
  returned: always
  type: str
  sample: 6.0.50
transactional:
  description:
    - Whether the engine rolls a failed migration back whole (true for PostgreSQL, SQLite, Firebird;
      false for MariaDB/MySQL). Null in O(command) mode.
  returned: always
  type: bool
  sample: true
history_table:
  description: The history table used (O(migrations) mode).
  returned: always
  type: str
  sample: clinops_schema_history
failed_migration:
  description: When a migration failed, its file, the line and text of the statement, and whether a failed entry was recorded.
  returned: failure
  type: dict
  sample: {file: V3__bad.sql, line: 4, statement: "CREAT TABLE x (id int)", recorded: false, rolled_back: true}
rc:
  description: The exit code of O(command).
  returned: when the command ran
  type: int
  sample: 0
stdout:
  description: The standard output of O(command).
  returned: when the command ran
  type: str
  sample: ''
stderr:
  description: The standard error of O(command).
  returned: when the command ran
  type: str
  sample: ''
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.clinops.upgrade.plugins.module_utils.schema.module import module_kwargs, run


def main():
    run(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
