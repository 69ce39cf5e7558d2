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
    SQLite's online backup API, C(gbak), C(tar) for an offline folder, C(BACKUP DATABASE) for SQL Server), verifies the
    result and writes a JSON manifest beside it (C(<backup>.manifest.json)).
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
    O(path), taken while the product's services are stopped (a file that changes while it is read fails the backup).
    V(mssql) - C(BACKUP DATABASE ... WITH COPY_ONLY, CHECKSUM) (the backup chain is untouched) and
    C(RESTORE VERIFYONLY ... WITH CHECKSUM) through C(sqlcmd), on the SQL Server host.
  - SQL Server cannot run on the machines this collection is tested on. The statements the module builds are covered by
    unit tests; the round trips through C(sqlcmd) have not been tested against a server.
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
    C(mariadb) or C(mysql); C(gbak); C(tar); C(sqlcmd)), and C(gzip) or C(zstd) for that compression
  - psycopg (PostgreSQL), PyMySQL (MariaDB/MySQL), firebird-driver (Firebird) for sizes and row counts
options:
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
    type: path
  name:
    description:
      - File name template of a new backup, with the fields C({engine}), C({database}), C({label}) and C({timestamp})
        (UTC, C(20250131T120000Z)). It must contain C({timestamp}) or C({label}).
      - Characters other than letters, digits, C(.), C(_) and C(-) in the values become C(_); with no O(label),
        C({label}) and the separator before it are dropped. The extension (C(.dump), C(.dir), C(.sql), C(.sqlite),
        C(.fbk), C(.tar), C(.bak), plus C(.gz)/C(.zst) when the module compresses) is appended unless present.
      - Unset means C({engine}_{database}_{label}_{timestamp}); C({database}) is O(database), or the base name of O(path).
    type: str
  format:
    description:
      - Backup format. Only V(postgresql) has a choice, V(custom) (default) or V(directory). The other engines have one
        format each, the default - V(sql) (mysql), V(sqlite), V(gbak) (firebird), V(tar) (files), V(bak) (mssql).
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
    type: str
  verify:
    description:
      - V(none) - only the checksum computed while writing.
      - V(quick) - the engine's own check of the file. PostgreSQL C(pg_restore --list) (reads the table of contents),
        MariaDB/MySQL the C(-- Dump completed) trailer (after decompressing the whole file when compressed),
        SQLite C(PRAGMA integrity_check) on the copy, Firebird a C(gbak) restore into a scratch database that is
        dropped again (gbak has no read-only check), C(tar --list) of the whole archive with its entry count compared
        to the folder, SQL Server C(RESTORE VERIFYONLY WITH CHECKSUM).
      - V(restore) - a test restore into a scratch database (a scratch file or folder for V(sqlite) and V(files))
        whose per-table row counts (entry count and bytes for V(files)) are compared with the source, then dropped.
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
      sha256, checksum_method, server_version, tool_versions, database_size, created_at, verification (level, ok, checks,
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

import grp
import json
import os
import pwd
import secrets
import signal
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    ENGINES,
    check_connection_params,
    database_argument_spec,
    require_driver,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.db_backup import (
    ALL_FORMATS,
    BackupError,
    backup_extension,
    build_manifest,
    check_checksum,
    compare_row_counts,
    elapsed,
    free_space,
    fsync_path,
    iso_now,
    load_manifests,
    make_engine,
    manifest_path,
    matching_manifests,
    mode_for_directory,
    remove_path,
    render_name,
    resolve_compression,
    resolve_format,
    select_for_retention,
    utc_timestamp,
)


def parse_mode(value):
    """An octal mode from ``"0600"``, ``"600"`` or an int; raise BackupError otherwise."""
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in '01234567' for c in text):
            raise BackupError('mode %r is not an octal number such as "0600"' % value)
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise BackupError('mode %r is out of range' % value)
    return mode


def validate_options(params):
    """Everything about the input that can be checked without touching anything; returns derived settings."""
    problem = check_connection_params(params, ENGINES)
    if problem:
        raise BackupError(problem)
    engine = params['engine']
    state = params['state']
    if state == 'present' and not params.get('dest'):
        raise BackupError('state present needs dest (the backup folder)')
    if state == 'restored' and not (params.get('dest') or params.get('backup')):
        raise BackupError('state restored needs backup, or dest to find the newest backup in')
    if state == 'present':
        for option in ('backup', 'target_database'):
            if params.get(option):
                raise BackupError('%s applies to state restored only' % option)
    if engine == 'firebird' and not params.get('path'):
        raise BackupError('engine firebird needs path (the database file as the server sees it)')
    fmt = resolve_format(engine, params.get('format'))
    compression = resolve_compression(engine, fmt, params.get('compression'))
    jobs = params.get('jobs')
    if jobs is None or jobs < 1:
        raise BackupError('jobs must be 1 or more')
    if jobs > 1 and not (engine == 'postgresql' and fmt == 'directory'):
        raise BackupError('jobs %d needs engine postgresql with format directory (other formats are written by one process)' % jobs)
    if params.get('keep') is not None and params['keep'] < 1:
        raise BackupError('keep must be 1 or more (the backup just taken is always kept)')
    if params.get('label') is not None and not params['label'].strip():
        raise BackupError('label must not be empty')
    mode = parse_mode(params.get('mode') if params.get('mode') is not None else '0600')
    if state == 'present':
        # render once now, so a bad template fails before anything is touched
        render_name(params.get('name'), engine, 'db', params.get('label'), utc_timestamp(), backup_extension(engine, fmt, compression))
    return dict(format=fmt, compression=compression, mode=mode)


def check_account(owner, group):
    for value, lookup, what in ((owner, pwd.getpwnam, 'owner'), (group, grp.getgrnam, 'group')):
        if value is None or value.isdigit():
            continue
        try:
            lookup(value)
        except KeyError:
            raise BackupError('%s %s does not exist on this host' % (what, value)) from None


def display_name(params):
    if params.get('database') and params['engine'] not in ('sqlite', 'files'):
        return params['database'] if params['engine'] != 'firebird' or not params.get('path') else _stem(params['path'])
    return _stem(params.get('path') or params.get('database') or 'db')


def _stem(path):
    base = os.path.basename(os.path.normpath(path))
    stem = os.path.splitext(base)[0]
    return stem or base


class Runner:
    """One module run: holds the module, the engine and what must be cleaned up on failure."""

    def __init__(self, module, settings):
        self.module = module
        self.params = module.params
        self.settings = settings
        self.started = time.monotonic()
        self.engine = make_engine(module, self.params, settings['format'], settings['compression'],
                                  secret_parent=getattr(module, 'tmpdir', None))
        self.temporary = []
        self.result = dict(changed=False, backup_path=None, manifest={}, verified=False, reused=False, rejected=[])

    # -- verification ---------------------------------------------------------------------------
    def verify_backup(self, path, manifest, level, expected_counts=None, fresh=False):
        """Run ``level`` checks on ``path``; return (checks, row_counts); raise BackupError on failure."""
        checks = []
        if not fresh:
            problem = check_checksum(manifest, path)
            if problem:
                raise BackupError(problem)
            checks.append('sha256 matches the manifest')
        else:
            checks.append('sha256 computed while writing (%s)' % manifest.get('checksum_method'))
        counts = None
        if level in ('quick', 'restore'):
            checks.append(self.engine.quick_check(path, manifest))
        if level == 'restore':
            scratch = self.engine.restore_scratch(path, manifest, self.engine.scratch_hint(path))
            try:
                counts = self.engine.scratch_counts(scratch)
            finally:
                self.engine.drop_scratch(scratch)
            if expected_counts is not None:
                problems = compare_row_counts(expected_counts, counts)
                if problems:
                    raise BackupError('the test restore differs from the source: %s' % '; '.join(problems[:10]))
                checks.append('test restore: %d tables, row counts equal to the source' % len(counts))
            else:
                checks.append('test restore: %d tables restored (the manifest has no source counts to compare)' % len(counts))
        return checks, counts

    def check_existing(self, manifest, level):
        """None when an existing backup can be trusted at ``level`` (checksum only in check mode), else the reason."""
        verification = manifest.get('verification') or {}
        if not verification.get('ok'):
            return 'its own verification had failed or never ran'
        try:
            if self.module.check_mode:
                return check_checksum(manifest, manifest['backup_path'])
            self.verify_backup(manifest['backup_path'], manifest, level, expected_counts=manifest.get('row_counts'))
        except BackupError as exc:
            return str(exc)
        except OSError as exc:
            return 'cannot read %s: %s' % (manifest['backup_path'], exc)
        return None

    # -- files ----------------------------------------------------------------------------------
    def apply_attributes(self, path):
        mode = self.settings['mode']
        paths = [path]
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                paths += [os.path.join(folder, n) for n in dirs + files]
        for item in paths:
            self.module.set_mode_if_different(item, mode_for_directory(mode) if os.path.isdir(item) else mode, False)
            if self.params.get('owner'):
                self.module.set_owner_if_different(item, self.params['owner'], False)
            if self.params.get('group'):
                self.module.set_group_if_different(item, self.params['group'], False)

    def check_dest_writable(self, dest):
        if not os.path.exists(dest):
            parent = os.path.dirname(os.path.abspath(dest))
            if not os.path.isdir(parent):
                raise BackupError('dest %s does not exist and neither does its parent %s' % (dest, parent))
            if not self.module.check_mode:
                try:
                    os.mkdir(dest, 0o700)
                except OSError as exc:
                    raise BackupError('cannot create dest %s: %s' % (dest, exc.strerror)) from exc
            return
        if not os.path.isdir(dest):
            raise BackupError('dest %s exists and is not a folder' % dest)
        if self.module.check_mode:
            if not os.access(dest, os.W_OK | os.X_OK):
                raise BackupError('dest %s is not writable' % dest)
            return
        try:
            fd, probe = tempfile.mkstemp(prefix='.db_backup-probe-', dir=dest)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise BackupError('dest %s is not writable: %s' % (dest, exc.strerror)) from exc

    # -- state=present --------------------------------------------------------------------------
    def present(self):
        params = self.params
        engine = self.engine
        dest = params['dest']
        fmt, compression = self.settings['format'], self.settings['compression']
        level = params['verify']
        self.check_dest_writable(dest)
        engine.resolve_programs()
        version, db_size = engine.probe()
        source = engine.source_id()
        existing = matching_manifests(load_manifests(dest), params['engine'], source)

        if params.get('label'):
            for manifest in matching_manifests(existing, params['engine'], source, params['label'], fmt, compression,
                                               label_required=True):
                reason = self.check_existing(manifest, level)
                if reason is None:
                    self.result.update(backup_path=manifest['backup_path'], manifest=_public(manifest), reused=True,
                                       verified=True, deleted=[])
                    return
                self.result['rejected'].append(dict(backup_path=manifest['backup_path'], reason=reason))
                self.module.warn('backup %s with label %s is not reused: %s' % (manifest['backup_path'], params['label'], reason))

        free = free_space(dest)
        needed = db_size or 0
        extension = backup_extension(params['engine'], fmt, compression)
        name = render_name(params.get('name'), params['engine'], display_name(params), params.get('label'), utc_timestamp(), extension)
        final = os.path.join(dest, name)
        counter = 1
        while os.path.lexists(final) or os.path.lexists(manifest_path(final)):
            counter += 1
            final = os.path.join(dest, '%s-%d%s' % (name[:-len(extension)], counter, extension))
        self.result.update(backup_path=final, estimated_size=db_size, free_space=free, space_ok=free >= needed)
        if free < needed:
            raise BackupError('not enough free space in %s: the database is %d bytes, %d bytes are free' % (dest, needed, free))
        planned = existing + [dict(backup_path=final, created_at='9999')]
        doomed = select_for_retention(planned, params.get('keep'), final)
        self.result['deleted'] = [m['backup_path'] for m in doomed]
        self.result['changed'] = True
        if self.module.check_mode:
            return

        tool_versions = engine.tool_versions()
        token = secrets.token_hex(4)
        tmp = os.path.join(dest, '.%s.%s.tmp' % (name, token))
        tmp_manifest = os.path.join(dest, '.%s.%s.manifest.tmp' % (name, token))
        self.temporary += [tmp, tmp_manifest]
        created_at = iso_now()
        dumped = engine.dump(tmp, count_rows=level == 'restore')
        manifest = build_manifest(
            params['engine'], display_name(params), source, params.get('label'), fmt, compression, os.path.basename(final),
            dumped['size'], dumped['sha256'], version, tool_versions, db_size, created_at, dumped['checksum_method'],
            files=dumped.get('files'), row_counts=dumped.get('row_counts'), extra=dumped.get('extra'))
        try:
            checks, counts = self.verify_backup(tmp, manifest, level, expected_counts=dumped.get('row_counts'), fresh=True)
        except BackupError as exc:
            raise BackupError('verification (%s) of the new backup failed, so it was removed and no older backup was'
                              ' deleted: %s' % (level, exc)) from exc
        manifest['verification'] = dict(level=level, ok=True, checks=checks, verified_at=iso_now())
        with open(tmp_manifest, 'x', encoding='utf-8') as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        self.apply_attributes(tmp)
        self.apply_attributes(tmp_manifest)
        os.rename(tmp, final)
        self.temporary.remove(tmp)
        self.temporary.append(final)
        os.rename(tmp_manifest, manifest_path(final))
        self.temporary = []
        fsync_path(dest)
        for old in doomed:
            remove_path(old['backup_path'])
            remove_path(old['manifest_path'])
        manifest['backup_path'] = final
        self.result.update(manifest=_public(manifest), verified=True)
        if counts is not None:
            self.result['row_counts'] = counts

    # -- state=restored -------------------------------------------------------------------------
    def find_backup(self):
        params = self.params
        if params.get('backup'):
            path = params['backup'].rstrip('/')
            try:
                with open(manifest_path(path), encoding='utf-8') as handle:
                    manifest = json.load(handle)
            except (OSError, ValueError) as exc:
                raise BackupError('backup %s has no readable manifest %s: %s' % (path, manifest_path(path), exc)) from exc
            if manifest.get('engine') != params['engine']:
                raise BackupError('backup %s is a %s backup, not %s' % (path, manifest.get('engine'), params['engine']))
            manifest['backup_path'] = path
            return manifest
        candidates = matching_manifests(load_manifests(params['dest']), params['engine'], self.engine.source_id(),
                                        params.get('label'), label_required=bool(params.get('label')))
        if not candidates:
            raise BackupError('no backup of %s%s with a manifest in %s' % (
                self.engine.source_id(), ' with label %s' % params['label'] if params.get('label') else '', params['dest']))
        return candidates[0]

    def restored(self):
        params = self.params
        engine = self.engine
        level = params['verify']
        manifest = self.find_backup()
        path = manifest['backup_path']
        self.result['backup_path'] = path
        engine.use_backup_format(manifest.get('format'), manifest.get('compression'))
        engine.resolve_programs()
        target = params.get('target_database') or engine.restore_target_default()
        self.result['target_database'] = target
        if not (manifest.get('verification') or {}).get('ok'):
            raise BackupError('backup %s did not pass its verification when it was taken; pass it as backup only after'
                              ' checking it by hand' % path)
        if self.module.check_mode:
            problem = check_checksum(manifest, path)
            if problem:
                raise BackupError('backup %s is not restored: %s' % (path, problem))
            self.result.update(changed=True, manifest=_public(manifest), verified=True)
            return
        quick = 'quick' if level == 'restore' else level
        try:
            self.verify_backup(path, manifest, quick)
        except BackupError as exc:
            self.result['rejected'].append(dict(backup_path=path, reason=str(exc)))
            raise BackupError('backup %s is not restored: %s' % (path, exc)) from exc
        scratch = engine.restore_scratch(path, manifest, target)
        try:
            counts = engine.scratch_counts(scratch)
            if manifest.get('row_counts') is not None and level != 'none':
                problems = compare_row_counts(manifest['row_counts'], counts)
                if problems:
                    raise BackupError('the restored copy differs from the counts in the manifest, %s was left as it was: %s'
                                      % (target, '; '.join(problems[:10])))
            engine.swap_in(scratch, target, path, manifest)
        except BaseException:
            engine.drop_scratch(scratch)
            raise
        self.result.update(changed=True, manifest=_public(manifest), verified=True, row_counts=counts)

    def cleanup(self):
        for path in self.temporary:
            remove_path(path)
        self.temporary = []
        self.engine.cleanup()


def _public(manifest):
    return dict((k, v) for k, v in manifest.items() if k not in ('manifest_path',))


def main():
    argument_spec = database_argument_spec()
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'restored']),
        dest=dict(type='path'),
        name=dict(type='str'),
        format=dict(type='str', choices=list(ALL_FORMATS)),
        compression=dict(type='str', choices=['none', 'gzip', 'zstd']),
        jobs=dict(type='int', default=1),
        label=dict(type='str'),
        verify=dict(type='str', default='quick', choices=['none', 'quick', 'restore']),
        keep=dict(type='int'),
        mode=dict(type='raw', default='0600'),
        owner=dict(type='str'),
        group=dict(type='str'),
        backup=dict(type='path'),
        target_database=dict(type='str'),
        bin_dir=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        settings = validate_options(module.params)
        check_account(module.params.get('owner'), module.params.get('group'))
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    if module.params['engine'] not in ('sqlite', 'files', 'mssql'):
        require_driver(module, module.params['engine'])

    def terminated(signum, _frame):
        raise BackupError('terminated by signal %d' % signum)

    previous_handler = signal.signal(signal.SIGTERM, terminated)
    runner = Runner(module, settings)
    failure = None
    try:
        if module.params['state'] == 'present':
            runner.present()
        else:
            runner.restored()
    except BackupError as exc:
        failure = str(exc)
    except OSError as exc:
        where = module.params.get('dest') or os.path.dirname(runner.result['backup_path'] or '')
        failure = 'writing in %s failed: %s' % (where, _os_error(exc))
    finally:
        runner.cleanup()
        signal.signal(signal.SIGTERM, previous_handler)
    for warning in runner.engine.warnings:
        module.warn(warning)
    runner.result['duration_s'] = elapsed(runner.started)
    if failure:
        runner.result.pop('changed', None)
        module.fail_json(msg=failure, **runner.result)
    module.exit_json(**runner.result)


def _os_error(exc):
    if getattr(exc, 'errno', None) == 28:
        return 'no space left on device (%s)' % (exc.filename or 'the backup')
    return '%s%s' % (exc.strerror or exc, ' (%s)' % exc.filename if exc.filename else '')


if __name__ == '__main__':
    main()
