#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: db_backup
short_description: Take a verified database backup before an upgrade, or restore one to roll it back
version_added: 0.1.0
author:
  - clinops.upgrade contributors (@clinops)
description:
  - With O(state=present), backs up one database with the engine's own tool (C(pg_dump), C(mariadb-dump)/C(mysqldump),
    SQLite's online backup API, C(gbak), C(tar) for an offline folder, C(BACKUP DATABASE) for SQL Server, or the product's
    own backup program with O(engine=command)), verifies the result and writes a JSON manifest beside it
    (C(<backup>.manifest.json)).
  - The dump is streamed from the tool through an optional C(gzip)/C(zstd) into a temporary file in O(dest); the
    sha256 is computed on the stream while it is written, so the checksum costs no second read. Exceptions, written
    into the manifest as C(checksum_method) - PostgreSQL directory format (C(pg_dump) writes the files itself, in
    parallel, so each file is hashed once after it is written), SQLite without compression (the backup API writes the
    copy itself) and SQL Server (the server writes the file).
  - The backup gets its final name only after it passed verification, by an atomic rename; on any failure (including a
    full disk) the temporary files and scratch databases are removed, so nothing partial is left behind.
  - Before anything is written, the free space in O(dest) is compared with the size of the database as its server
    reports it (PostgreSQL C(pg_database_size), MariaDB/MySQL data and index length, Firebird pages, SQLite file size,
    the sum of the file sizes for O(engine=files)).
  - O(label) makes the module idempotent. A backup of the same source, format and compression with that label whose
    checksum still matches its manifest, and that passes the O(verify) check again, is reused
    (RV(ignore:changed=false), RV(reused=true)); a damaged one is reported in RV(rejected) and a new backup is taken.
  - O(keep) prunes older backups of the same source in O(dest) (only those with a manifest); the backup just taken is
    never deleted, and nothing is deleted when this run's verification failed.
  - Passwords never appear on a command line. PostgreSQL reads it from a 0600 C(PGPASSFILE), MariaDB/MySQL from a 0600
    C(--defaults-extra-file), C(gbak) through C(-fetch_password) from a 0600 file; the files live in a private 0700
    folder and are removed afterwards. C(sqlcmd) gets it in C(SQLCMDPASSWORD), in its own environment only.
  - With O(state=restored), the backup (O(backup), or the newest one with a manifest for this source and O(label) in
    O(dest)) is verified first, restored into a scratch database, its rows counted per table and compared with the
    counts in the manifest (when it has them), and only then swapped in place of O(target_database). A failed restore
    leaves the target untouched. This is the rollback of a failed upgrade.
  - Engine specifics. V(postgresql) - formats V(custom) (streamed, so the archive has no data offsets and C(pg_restore)
    reads it sequentially) and V(directory) (O(jobs) parallel C(pg_dump) and C(pg_restore) workers); the swap renames
    the databases, which needs no other sessions on the target. V(mysql) - C(--single-transaction) consistent snapshot
    (InnoDB), C(--routines), C(--hex-blob); MySQL cannot rename a database, so a restore over an existing database
    loads the dump twice, first into the scratch database that proves it loads, then into the emptied target.
    V(sqlite) - a one-step online backup (consistent while the application writes). V(firebird) - C(gbak -b -g),
    run on the database host (the scratch database is created beside O(path)). V(files) - C(tar) of the folder
    O(path), taken while the product's services are stopped (a file that changes while it is read fails the backup);
    symlinks in the folder are archived as symlinks, never followed, and O(path) itself may not be a symlink. Before a
    V(files) archive is restored (or test-restored), its member list is checked; a member that would be written outside
    the folder (C(..), an absolute name, a member written through a symlink member, a hard link to a symlink) fails
    the restore before C(tar) writes anything.
    V(mssql) - C(BACKUP DATABASE [db] TO DISK = N'...' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT) (the backup chain is
    untouched), then C(RESTORE VERIFYONLY FROM DISK = N'...' WITH CHECKSUM), through C(sqlcmd) on the SQL Server host
    (SQL Server writes the file; the module hashes it). Server C(tcp:login_host,login_port) or the named instance
    O(login_instance); Windows authentication (C(sqlcmd -E)) without O(login_user), else a SQL login whose password
    reaches C(sqlcmd) in C(SQLCMDPASSWORD). Identifiers are quoted C([name]) with C(]) doubled, strings C(N'...') with
    C(') doubled; a database name that is empty, longer than 128 characters or holds a control character is refused
    before anything runs. The restore (rollback) restores under a scratch name with its files moved, counts its rows,
    drops it, then restores over the target C(WITH REPLACE) after C(SET SINGLE_USER WITH ROLLBACK IMMEDIATE) (other
    sessions are ended) and sets C(MULTI_USER) again, also when the restore fails.
    V(command) - the product's own backup program (O(command.argv), in O(command.chdir), with
    O(command.environment) and O(login_password) in O(command.password_env), killed after O(command.timeout)).
    What it wrote is what matches O(command.output) after the run and did not match (or had another size, time or
    inode) before it; an exit code other than 0, or nothing
    written, fails the task and stores nothing. Those files are stored in O(dest) as one C(tar) (format V(tar)), every
    file's sha256 in the manifest. V(quick) re-reads every file from the archive and compares its sha256 with the one
    taken right after the program wrote it, then runs O(command.verify_argv) when given; V(restore) also extracts the
    archive and compares the file count and bytes. A restore runs O(command.restore_argv), or puts every file back
    where the program wrote it (each through a temporary file and a rename).
  - SQL Server cannot run on the machines this collection is tested on. The T-SQL, the C(sqlcmd) argument list and its
    environment are checked by unit tests, and the integration tests run the module against a C(sqlcmd) double
    (a small script that refuses options the real C(sqlcmd) does not have, and a password on its command line) for a
    backup, a verification and a restore. C(sqlcmd) is used rather than the C(lowlydba.sqlserver) modules because those
    need PowerShell and the dbatools module on the host and run as separate tasks, while db_backup runs in-process
    inside the upgrade engine and must hash and verify the file it just wrote; C(sqlcmd) ships with SQL Server
    (C(mssql-tools18) or go-sqlcmd on Linux).
extends_documentation_fragment:
  - clinops.upgrade.database
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details:
      - Connects (read-only) to read the database size, predicts RV(backup_path), RV(estimated_size), RV(free_space),
        RV(space_ok) and the backups O(keep) would delete (RV(deleted)), and fails like the real run when space is short.
      - With O(label), an existing backup's checksum is re-read to predict reuse; the engine check
        (which may write a scratch database) is skipped. Nothing is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - the engine's client programs on the managed node (C(pg_dump) and C(pg_restore); C(mariadb-dump) or C(mysqldump) and
    C(mariadb) or C(mysql); C(gbak); C(tar); C(sqlcmd); the product's backup program and C(tar) for V(command)), and
    C(gzip) or C(zstd) for that compression
  - psycopg (PostgreSQL), PyMySQL (MariaDB/MySQL), firebird-driver (Firebird) for sizes and row counts
options:
  engine:
    description:
      - The database engine, as in the collection's database options, plus V(command).
      - V(postgresql) uses psycopg and the PostgreSQL client programs; V(mysql) covers MariaDB and MySQL
        through PyMySQL and the mariadb/mysql client programs; V(sqlite) uses Python's sqlite3 on O(path);
        V(firebird) uses firebird-driver and C(gbak) on O(path) (FireBird and RedDatabase);
        V(files) is an offline folder such as an embedded Derby database or a 4D data folder, at O(path);
        V(mssql) is Microsoft SQL Server through C(sqlcmd); V(command) is the product's own backup program (O(command)).
    type: str
    required: true
    choices: [postgresql, mysql, sqlite, firebird, files, mssql, command]
  command:
    description:
      - The product's own backup program, for O(engine=command) only (refused with another engine).
    type: dict
    suboptions:
      argv:
        description:
          - The backup program and its arguments, run without a shell. A bare name is looked up in O(bin_dir) when
            set, else in C(PATH). Required with O(engine=command).
        type: list
        elements: str
      chdir:
        description:
          - Working folder of the backup, verify and restore programs.
        type: path
      timeout:
        description:
          - Seconds the backup (and each verify or restore) program may run; it is then killed with its whole
            process group and the task fails.
        type: int
        default: 3600
      environment:
        description:
          - Variables added to the programs' environment. Not for secrets (they are shown like any option); see
            O(command.password_env).
        type: dict
        default: {}
      password_env:
        description:
          - Name of an environment variable that gets O(login_password) (a C(no_log) option) for the backup, verify and
            restore programs, so a password never appears on their command line or in the task's output.
        type: str
      output:
        description:
          - Absolute path or glob (C(*), C(?), C([...]), C(**)) of what the backup program writes, such as
            C(/srv/conaktiv/Backup/*.cab). Required with O(engine=command).
          - The files and folders that match after the run and did not match before it, or matched with another size,
            modification time or inode, are the backup. The program's own files are left where it wrote them.
        type: str
      verify_argv:
        description:
          - A program that checks the backup, run after the checksums with C({backup}) in its arguments replaced by
            an extracted copy (the file when the backup holds one file, else the folder holding them). Exit code 0
            means good.
        type: list
        elements: str
      restore_argv:
        description:
          - With O(state=restored), the program that restores the backup, with C({backup}) replaced as in
            O(command.verify_argv). Unset means every file is put back where the backup program wrote it.
        type: list
        elements: str
  state:
    description:
      - V(present) takes a backup (or reuses one, see O(label)).
      - V(restored) verifies a backup and restores it.
    type: str
    choices: [present, restored]
    default: present
  dest:
    description:
      - Folder that holds the backups and their manifests. Created (mode 0700) when missing.
      - Required with O(state=present), and with O(state=restored) unless O(backup) is given.
      - A path with a C(..) component is refused, as it is in O(path), O(backup), O(bin_dir) and, for V(sqlite),
        V(firebird) and V(files), O(target_database).
    type: path
  name:
    description:
      - File name template of a new backup, with the fields C({engine}), C({database}), C({label}) and C({timestamp})
        (UTC, C(20250131T120000Z)). It must contain C({timestamp}) or C({label}).
      - Characters other than letters, digits, C(.), C(_) and C(-) in the values become C(_); with no O(label),
        C({label}) and the separator before it are dropped. The extension (C(.dump), C(.dir), C(.sql), C(.sqlite),
        C(.fbk), C(.tar), C(.bak), plus C(.gz)/C(.zst) when the module compresses) is appended unless present.
      - Unset means C({engine}_{database}_{label}_{timestamp}); C({database}) is O(database), or the base name of O(path)
        (for V(command), of the program in O(command.argv)).
      - A template with C(/), a backslash or C(..) is refused.
    type: str
  format:
    description:
      - Backup format. Only V(postgresql) has a choice, V(custom) (default) or V(directory). The other engines have one
        format each, the default - V(sql) (mysql), V(sqlite), V(gbak) (firebird), V(tar) (files, command), V(bak) (mssql).
    type: str
    choices: [custom, directory, sql, sqlite, gbak, tar, bak]
  compression:
    description:
      - V(gzip) or V(zstd) pipe the dump through that program; V(none) writes it as the tool produces it.
      - For V(postgresql), V(gzip) is C(pg_dump)'s own compression (the default, as with C(pg_dump -Fc)); V(zstd) is
        piped for V(custom) and needs C(pg_dump) 16 for V(directory).
      - For V(mssql), V(gzip) means SQL Server's native backup compression; V(zstd) is refused.
      - Unset means V(gzip) for V(postgresql) and V(none) for the other engines.
    type: str
    choices: [none, gzip, zstd]
  jobs:
    description:
      - Parallel C(pg_dump)/C(pg_restore) workers for the PostgreSQL V(directory) format; every other case needs 1.
    type: int
    default: 1
  label:
    description:
      - A name for this backup, such as C(pre-upgrade-4.2). It is written into the manifest and the file name.
      - A verified backup of the same source, format and compression with this label is reused instead of taking a
        second one. With O(state=restored) and no O(backup), the newest backup with this label is restored.
      - A label with C(/), a backslash or C(..) is refused (it is part of a file name).
    type: str
  verify:
    description:
      - V(none) - only the checksum computed while writing.
      - V(quick) - the engine's own check of the file. PostgreSQL C(pg_restore --list) (reads the table of contents),
        MariaDB/MySQL the C(-- Dump completed) trailer (after decompressing the whole file when compressed),
        SQLite C(PRAGMA integrity_check) on the copy, Firebird a C(gbak) restore into a scratch database that is
        dropped again (gbak has no read-only check), C(tar --list) of the whole archive with its entry count compared
        to the folder, SQL Server C(RESTORE VERIFYONLY WITH CHECKSUM), V(command) every file re-read from the archive
        against the sha256 taken when the program wrote it, then O(command.verify_argv).
      - V(restore) - a test restore into a scratch database (a scratch file or folder for V(sqlite), V(files) and V(command))
        whose per-table row counts (entry count and bytes for V(files), file count and bytes for V(command)) are compared
        with the source, then dropped.
        PostgreSQL counts the source rows in the very snapshot C(pg_dump) dumps; the other engines count them just
        before the dump, so a database that is written to meanwhile fails the comparison.
      - A backup that fails verification is deleted and the module fails. A reused or restored backup is checked
        again at this level, after its checksum.
    type: str
    choices: [none, quick, restore]
    default: quick
  keep:
    description:
      - Keep the newest O(keep) backups of this source in O(dest) (the new one included) and delete older ones with
        their manifests. Backups without a manifest are never touched. Unset keeps everything.
    type: int
  mode:
    description:
      - Octal permissions of the backup and its manifest, such as C("0600"). A V(directory) backup's folders get the
        execute bit wherever read is granted.
    type: raw
    default: "0600"
  owner:
    description:
      - Owner of the backup and its manifest. Unset leaves the user the module runs as.
    type: str
  group:
    description:
      - Group of the backup and its manifest.
    type: str
  backup:
    description:
      - With O(state=restored), the backup to restore (file, or folder for the V(directory) format). Its manifest
        (C(<backup>.manifest.json)) must be beside it.
      - Unset means the newest backup of this source (with O(label) when given) in O(dest). If that one is damaged, the
        module fails rather than silently restoring an older one.
    type: path
  target_database:
    description:
      - With O(state=restored), restore under this name instead of O(database). For V(sqlite), V(firebird) and
        V(files), the file or folder path to restore to instead of O(path).
      - An existing target is replaced only after the restored copy passed its checks.
      - Refused for V(command) (see O(command.restore_argv)).
    type: str
  bin_dir:
    description:
      - Folder holding the engine's client programs, such as C(/usr/lib/postgresql/16/bin) when the server is newer
        than the default C(pg_dump). When set, client programs are looked up only there (C(gzip), C(zstd) and C(tar)
        still come from C(PATH)).
    type: path
notes:
  - O(engine=firebird) needs O(path) (the database file as the server sees it); run the module on the database host.
  - O(state=restored) always reports RV(ignore:changed=true); every run restores.
  - O(login_instance) applies to O(engine=mssql) only.
  - The module does not hold locks; stop the product's services first for O(engine=files) and for a restore.
seealso:
  - name: community.postgresql.postgresql_db
    description: Dumps without verification, checksums, retention or check-mode prediction.
    link: https://docs.ansible.com/ansible/latest/collections/community/postgresql/postgresql_db_module.html
"""

EXAMPLES = r"""
- name: Back up the PMOD database before the migration (reused if the upgrade is rerun)
  clinops.upgrade.db_backup:
    engine: postgresql
    database: pmod
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    dest: /var/backups/clinops
    label: pre-upgrade-4.2
    verify: restore
    keep: 3
  register: pmod_backup

- name: Back up ConAktiv's MariaDB with zstd
  clinops.upgrade.db_backup:
    engine: mysql
    database: conaktiv
    login_unix_socket: /run/mysqld/mysqld.sock
    login_user: backup
    login_password: "{{ vault_mysql_password }}"
    dest: /var/backups/clinops
    compression: zstd
    label: before-upgrade

- name: Back up the KSAMU Firebird database
  clinops.upgrade.db_backup:
    engine: firebird
    path: /var/lib/firebird/data/ksamu.fdb
    login_host: 127.0.0.1
    login_user: SYSDBA
    login_password: "{{ vault_fb_password }}"
    dest: /var/backups/clinops

- name: Copy the stopped Derby database folder
  clinops.upgrade.db_backup:
    engine: files
    path: /opt/imageserver/derby
    dest: /var/backups/clinops
    compression: gzip

- name: Back up the ImageServer database on SQL Server (Windows authentication, named instance)
  clinops.upgrade.db_backup:
    engine: mssql
    database: ImageServer
    login_host: 127.0.0.1
    login_instance: SQLEXPRESS
    dest: /var/opt/mssql/backup/clinops
    label: pre-upgrade-13.2

- name: Back up ConAktiv with its own backup program, then check what it wrote
  clinops.upgrade.db_backup:
    engine: command
    database: conaktiv
    command:
      argv: [/opt/conaktiv/bin/ca-admin, backup, --to, /srv/conaktiv/Backup]
      timeout: 1800
      output: /srv/conaktiv/Backup/*.cab
      verify_argv: [/opt/conaktiv/bin/ca-admin, verify, "{backup}"]
    dest: /var/backups/clinops
    label: pre-upgrade

- name: Roll back - restore the pre-upgrade backup
  clinops.upgrade.db_backup:
    engine: postgresql
    database: pmod
    login_host: 127.0.0.1
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    dest: /var/backups/clinops
    label: pre-upgrade-4.2
    state: restored
  when: upgrade_failed | default(false)
"""

RETURN = r"""
backup_path:
  description: The backup taken, reused or restored (in check mode, the path a backup would get).
  returned: always
  type: str
  sample: /var/backups/clinops/postgresql_pmod_pre-upgrade-4.2_20250131T120000Z.dump
manifest:
  description:
    - The backup's manifest, as written beside it - engine, database, source, label, format, compression, file, size,
      sha256, checksum_method, server_version, tool_versions, database_size, created_at, created_ns (nanoseconds since
      the epoch, which orders backups taken in the same second), verification (level, ok, checks,
      verified_at), row_counts (when counted), files (per-file size and sha256 of a V(directory) backup).
    - Empty in check mode.
  returned: always
  type: dict
  sample: {"engine": "postgresql", "database": "pmod", "size": 1048576, "sha256": "9f86d081...", "label": "pre-upgrade-4.2"}
verified:
  description: Whether the backup passed the O(verify) level in this run (the checksum only for O(verify=none)).
  returned: always
  type: bool
reused:
  description: Whether an existing backup with O(label) was reused instead of taking a new one.
  returned: always
  type: bool
duration_s:
  description: Seconds the module spent.
  returned: always
  type: float
estimated_size:
  description: The database size in bytes as its server reports it; the free space needed before a backup starts.
  returned: when O(state=present) and no backup was reused
  type: int
free_space:
  description: Bytes available in O(dest) before the backup.
  returned: when O(state=present) and no backup was reused
  type: int
space_ok:
  description: Whether RV(free_space) is at least RV(estimated_size).
  returned: when O(state=present) and no backup was reused
  type: bool
deleted:
  description: Backups deleted by O(keep) (in check mode, those that would be).
  returned: when O(state=present)
  type: list
  elements: str
rejected:
  description: Backups with O(label) that were not reused or restored, with the reason (damaged, failed verification).
  returned: always
  type: list
  elements: dict
  sample: [{"backup_path": "/var/backups/x.dump", "reason": "sha256 of backup /var/backups/x.dump is ..., its manifest says ... (damaged)"}]
row_counts:
  description:
    - Rows per table of the restored database (O(state=restored)) or of the test restore (O(verify=restore)).
    - For V(files), the entry count and bytes of the folder.
  returned: when a restore ran
  type: dict
  sample: {"public.patients": 5000, "public.studies": 12000}
target_database:
  description: The database (or path) restored to.
  returned: when O(state=restored)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.module import module_kwargs, run


def main():
    run(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
