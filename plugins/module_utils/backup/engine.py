# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base class of the db_backup engines: finding client programs, running pipelines, connecting, probing,
counting rows, and the interface each engine fills in (dump, quick_check, restore_scratch, drop_scratch, swap_in).

One file per engine beside this one: postgresql, mysql, sqlite, firebird, files, mssql, command.
"""

from __future__ import annotations

import os
import re

from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError, COMPRESSORS, external_compression, first_line
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.hostio import LocalIO
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.streams import (
    HashingWriter,
    SecretFiles,
    open_exclusive,
    pipeline_failure,
    run_pipeline,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError,
    connect,
    database_size,
    describe_error,
    server_version,
    table_row_counts,
)


# ----------------------------------------------------------------------------------------------
# engines

class Engine:
    """One database engine: probe, dump to a stream, verify, restore into a scratch copy, swap it in."""

    engine = None
    programs = ()
    error_patterns = ()
    io = LocalIO()  # where the files and programs are; the runner sets a remote host's operations (backup/hostio.py)

    def __init__(self, module, params, fmt, compression, secret_parent=None):
        self.module = module
        self.params = params
        self.fmt = fmt
        self.compression = compression
        self.compressor = external_compression(params['engine'], fmt, compression)
        self.secret_parent = secret_parent
        self.secrets = None
        self.bins = {}
        self.warnings = []

    # -- programs -------------------------------------------------------------------------------
    def find_program(self, names, purpose, client=True):
        """The first of ``names`` found (only in ``bin_dir`` when set, for client programs)."""
        bin_dir = self.params.get('bin_dir') if client else None
        if self.io.remote:
            # a remote host: its own program search (PATH, or bin_dir); a missing one fails when it runs, in words
            return (bin_dir.rstrip('/\\') + '/' + names[0]) if bin_dir else names[0]
        for name in names:
            if bin_dir:
                candidate = os.path.join(bin_dir, name)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return candidate
            else:
                found = self.module.get_bin_path(name)
                if found:
                    return found
        where = 'in bin_dir %s' % bin_dir if bin_dir else 'in PATH'
        raise BackupError('client program %s (needed to %s) was not found %s' % (' or '.join(names), purpose, where))

    def resolve_programs(self):
        for key, names, purpose in self.programs:
            self.bins[key] = self.find_program(names, purpose)
        if self.compressor:
            self.bins[self.compressor] = self.find_program([COMPRESSORS[self.compressor][0]],
                                                           'compress with %s' % self.compressor, client=False)

    def tool_versions(self):
        versions = {}
        for key, path in sorted(self.bins.items()):
            args = [path, '-z'] if key.startswith('gbak') else [path, '--version']
            rc, out, err = self.module.run_command(args)
            versions[os.path.basename(path)] = first_line(out) or first_line(err) or 'unknown (exit %s)' % rc
        return versions

    def compress_cmd(self):
        name, args, _dec = COMPRESSORS[self.compressor]
        return [self.bins[self.compressor]] + args

    def decompress_cmds(self, compression=None):
        compression = compression or self.compression
        comp = external_compression(self.params['engine'], self.fmt, compression)
        if not comp:
            return []
        path = self.bins.get(comp) or self.find_program([COMPRESSORS[comp][0]], 'decompress', client=False)
        return [[path] + COMPRESSORS[comp][2]]

    def secret_files(self):
        if self.secrets is None:
            self.secrets = SecretFiles(self.secret_parent)
        return self.secrets

    def cleanup(self):
        if self.secrets is not None:
            self.secrets.cleanup()
            self.secrets = None

    def env(self):
        env = dict(os.environ)
        env['LC_ALL'] = 'C'
        env['LANG'] = 'C'
        return env

    def run(self, cmds, stdin=None, sink=None, what='the command'):
        if self.io.remote:
            results = self.run_remote(cmds, stdin, sink, what)
        else:
            results = run_pipeline(cmds, stdin=stdin, sink=sink, env=self.env())
        problem = pipeline_failure(results, self.error_patterns)
        if problem:
            raise BackupError('%s failed: %s' % (what, problem))
        for name, _rc, err in results:
            for line in err.splitlines():
                if re.search(r'warning', line, re.I):
                    self.warnings.append('%s: %s' % (name, line.strip()))
        return results

    def run_remote(self, cmds, stdin, sink, what):
        """One program on a remote host (no pipeline, no stdin there): ``[(name, rc, stderr)]`` as run_pipeline's."""
        if len(cmds) != 1 or stdin is not None:
            raise BackupError('%s needs a pipeline or a stream, which engine %s does not run on a remote host'
                              % (what, self.params['engine']))
        rc, out, err = self.io.run(cmds[0], env=self.remote_env())
        if sink is not None:
            sink(out.encode('utf-8'))
        return [(os.path.basename(str(cmds[0][0]).replace('\\', '/')), rc, err)]

    def remote_env(self):
        """What a remote program's environment adds: nothing by default (a secret never goes to a remote argv)."""
        return None

    # -- the database ---------------------------------------------------------------------------
    def source_id(self):
        return self.params.get('database')

    def connect(self, database=None):
        params = dict(self.params)
        if database is not None:
            params['database'] = database
        try:
            return connect(params, autocommit=True)
        except DatabaseError as exc:
            raise BackupError(str(exc)) from exc

    def probe(self):
        """``(server version, database size in bytes or None)``; fails in words when unreachable."""
        conn = self.connect()
        try:
            return server_version(conn, self.params['engine']), database_size(conn, self.params['engine'])
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('cannot read the size of %s: %s' % (self.source_id(), describe_error(exc))) from exc
        finally:
            conn.close()

    def row_counts(self, database=None):
        conn = self.connect(database)
        try:
            return table_row_counts(conn, self.params['engine'])
        except BackupError:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise BackupError('cannot count the rows of %s: %s' % (database or self.source_id(), describe_error(exc))) from exc
        finally:
            conn.close()

    def restore_target_default(self):
        return self.params.get('database')

    def scratch_hint(self, backup_path):
        """Where (or under which name) a test restore of ``backup_path`` goes."""
        return self.source_id()

    def use_backup_format(self, fmt, compression):
        """Read a backup written with ``fmt``/``compression`` (from its manifest)."""
        self.fmt = fmt
        self.compression = compression
        self.compressor = external_compression(self.params['engine'], fmt, compression)

    # -- subclass API ---------------------------------------------------------------------------
    def dump(self, tmp_path, count_rows=False):
        """Write the backup to ``tmp_path``; return dict(size, sha256, checksum_method, files, row_counts)."""
        raise NotImplementedError

    def quick_check(self, path, manifest):
        """The engine's own check of a backup; return a sentence describing what was checked."""
        raise NotImplementedError

    def restore_scratch(self, path, manifest, target_hint):
        """Restore into a new scratch copy; return its handle (a name or a path)."""
        raise NotImplementedError

    def scratch_counts(self, handle):
        return self.row_counts(handle)

    def drop_scratch(self, handle):
        raise NotImplementedError

    def swap_in(self, handle, target, path, manifest):
        """Make the verified scratch copy ``target`` (replacing what is there)."""
        raise NotImplementedError

    # -- shared dump helpers ----------------------------------------------------------------------
    def stream_to(self, tmp_path, cmds, what):
        cmds = list(cmds)
        if self.compressor:
            cmds.append(self.compress_cmd())
        with open_exclusive(tmp_path) as handle:
            writer = HashingWriter(handle)
            self.run(cmds, sink=writer, what=what)
            os.fsync(handle.fileno())
        return dict(size=writer.size, sha256=writer.hexdigest, checksum_method='stream')

    def open_backup_stream(self, path, manifest):
        """``(stdin handle, decompress commands)`` to read a backup file's uncompressed content."""
        return open(path, 'rb'), self.decompress_cmds(manifest.get('compression'))


class _PathEngine(Engine):
    """An engine whose database is a file or folder at ``path``: test restores go beside the backup."""

    def source_id(self):
        return os.path.realpath(self.params['path'])

    def restore_target_default(self):
        return self.params['path']

    def scratch_hint(self, backup_path):
        return backup_path
