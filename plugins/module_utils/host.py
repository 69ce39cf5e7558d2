# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the upgrade engine needs of a host, in one small interface.

The steps of :mod:`cutover` decide; a host object carries out. :class:`PosixHost` does it on the host itself, inside
the module. A ``WindowsHost`` (an action plugin on the controller, carrying out each operation with the
ansible.windows modules) implements the same methods:

============================  =====================================================================================
``exists/isdir/isfile/islink``  what a path is (``islink`` without following it)
``listdir(path)``               the names in a folder
``read_text(path)``             a text file's content (UTF-8), None when it is missing or unreadable
``write_atomic(path, text)``    temp file beside it, fsync, mode, rename over, fsync the folder
``rename(src, dst)``            rename within one file system, then fsync the folder(s)
``makedirs(path, mode)``        a folder and its parents
``copy_tree(src, dst)``         a copy of a folder, links copied as links
``remove_tree(path)``           a folder (or file, or link) removed without following links
``unpack(archive, dest)``       a release archive unpacked; members that would leave ``dest`` are refused
``module(name, params)``        one of the collection's modules (service_stop_ordered, db_backup, prefs_migrate,
                                schema_update, artifact_fetch) with its own options, its result returned, its failure raised
``services(state, ...)``        services stopped/started/restarted in the vendor's order (service_stop_ordered)
``run(argv, cwd, timeout)``     a command's exit code and output, or a clear failure when it does not end in time
``free_space(path)``            bytes free for an unprivileged user on the file system of ``path``
``clock()``                     the host's time (ISO 8601, UTC) and its time zone name
============================  =====================================================================================
"""

from __future__ import annotations

import datetime
import os
import shutil
import stat
import subprocess
import tarfile
import time
import zipfile

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.clinops.upgrade.plugins.module_utils import artifact as _artifact
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as _db_backup
from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import migration as _prefs
from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as _schema_update
from ansible_collections.clinops.upgrade.plugins.module_utils.service import task as _services

_VALIDATOR_KEYS = ('mutually_exclusive', 'required_together', 'required_one_of', 'required_if', 'required_by')


class StepFailed(Exception):
    """A step could not be done; ``result`` is what the module of that step returned, when one ran."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}


class _Ended(BaseException):
    """Raised by SubModule.exit_json/fail_json: the in-process module is done (like SystemExit, not an Exception)."""

    def __init__(self, failed, result):
        super().__init__(result.get('msg', ''))
        self.failed = failed
        self.result = result


class SubModule:
    """What one of the collection's modules sees when upgrade_cutover runs it inside its own process."""

    def __init__(self, parent, name, kwargs, params):
        kwargs = dict(kwargs)
        spec = kwargs.pop('argument_spec')
        validator = ArgumentSpecValidator(spec, **dict((k, kwargs[k]) for k in _VALIDATOR_KEYS if kwargs.get(k)))
        checked = validator.validate(dict((k, v) for k, v in params.items() if v is not None))
        if checked.error_messages:
            raise StepFailed('invalid %s options, nothing was done: %s' % (name, '; '.join(checked.error_messages)))
        # the values of the module's no_log options (and of their fallbacks), as AnsibleModule collects them
        parent.no_log_values.update(checked._no_log_values)  # pylint: disable=protected-access
        self.params = checked.validated_parameters
        self.name = name
        self.check_mode = parent.check_mode
        self._diff = False
        self._parent = parent

    def fail_json(self, msg, **kwargs):
        kwargs.update(msg=msg, failed=True)
        raise _Ended(True, kwargs)

    def exit_json(self, **kwargs):
        raise _Ended(False, kwargs)

    def warn(self, warning):
        self._parent.warn('%s: %s' % (self.name, warning))

    def __getattr__(self, attr):
        # run_command, get_bin_path, tmpdir, atomic_move, add_cleanup_file, no_log_values: the real module's
        return getattr(self._parent, attr)


def run_module(parent, name, util, params):
    """Run the module ``name`` (its module_utils ``util`` with run()/module_kwargs()) in-process; return its result."""
    sub = SubModule(parent, name, util.module_kwargs(), params)
    try:
        util.run(sub)
    except _Ended as ended:
        if ended.failed:
            raise StepFailed(ended.result.get('msg') or '%s failed' % name, ended.result)
        return ended.result
    raise StepFailed('%s ended without a result' % name)


def _refuse_escapes(archive, members):
    """Replay the members on a virtual tree (``paths.archive_escapes``); refuse the archive when one would leave."""
    bad = _paths.archive_escapes(members)
    if bad:
        raise StepFailed('%s has members that would leave the staging folder, nothing was unpacked: %s' % (archive, '; '.join(bad[:5])))


def extract(archive, dest, only=None):
    """Unpack a release (.tar, .tar.gz/.tgz/.tar.bz2/.tar.xz, or .zip) into ``dest``; only members under ``only`` when
    given. Members that would leave ``dest`` (absolute, ``..``, symlinks leading out, members written through a symlink
    member, hard links to a path outside or to a symlink, devices) are refused before the first one is written."""
    dest = os.path.abspath(dest)
    prefix = only.strip('/') + '/' if only else None

    def wanted(name):
        name = name.lstrip('./') if name.startswith('./') else name
        return prefix is None or name == prefix.rstrip('/') or name.startswith(prefix)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if wanted(m.filename)]
            # zipfile writes a symlink entry as a plain file holding the target's name: only names can leave
            _refuse_escapes(archive, [(m.filename, 'dir' if m.is_dir() else 'file', '') for m in members])
            for member in members:
                zipped.extract(member, dest)
        return len(members)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if wanted(m.name)]
            _refuse_escapes(archive, [_paths.tar_member(m) for m in members])
            for member in members:
                member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
                if hasattr(tarfile, 'data_filter'):
                    tar.extract(member, dest, filter='data')
                else:  # Python before 3.11.4: the checks above are the filter
                    tar.extract(member, dest)  # nosec
        return len(members)
    except (tarfile.TarError, EOFError, zipfile.BadZipFile) as exc:
        raise StepFailed('cannot unpack %s: %s' % (archive, exc)) from exc


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PosixHost:
    """The host operations of the engine, carried out where the module runs (a POSIX host)."""

    def __init__(self, module):
        self.module = module

    # -- files ----------------------------------------------------------------------------------------------------
    @staticmethod
    def exists(path):
        return os.path.lexists(path)

    @staticmethod
    def isdir(path):
        return os.path.isdir(path)

    @staticmethod
    def isfile(path):
        return os.path.isfile(path)

    @staticmethod
    def islink(path):
        return os.path.islink(path.rstrip('/') or '/')

    @staticmethod
    def readlink(path):
        """Where a symlink leads (its text), for messages."""
        return os.readlink(path.rstrip('/'))

    @staticmethod
    def realpath(path):
        return os.path.realpath(path)

    @staticmethod
    def listdir(path):
        return os.listdir(path)

    @staticmethod
    def read_text(path):
        try:
            with open(path, encoding='utf-8') as handle:
                return handle.read()
        except (OSError, UnicodeDecodeError):
            return None

    @staticmethod
    def write_atomic(path, text, mode=0o644):
        folder = os.path.dirname(path) or '.'
        tmp = os.path.join(folder, '.%s.%d.tmp' % (os.path.basename(path), os.getpid()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        fsync_dir(folder)

    @staticmethod
    def rename(src, dst):
        os.rename(src, dst)
        folders = {os.path.dirname(src.rstrip('/')) or '.', os.path.dirname(dst.rstrip('/')) or '.'}
        for folder in sorted(folders):
            fsync_dir(folder)

    @staticmethod
    def makedirs(path, mode=0o750):
        os.makedirs(path, mode, exist_ok=True)

    @staticmethod
    def copy_tree(src, dst):
        shutil.copytree(src, dst, symlinks=True)

    @staticmethod
    def remove_tree(path):
        """Remove ``path``; a link is removed itself, never what it points to (nor do links inside get followed)."""
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)

    @staticmethod
    def unpack(archive, dest, only=None):
        return extract(archive, dest, only=only)

    # -- modules, services, commands ------------------------------------------------------------------------------
    @staticmethod
    def util(name):
        """The module_utils (run() and module_kwargs()) of the collection's module ``name``."""
        return {'service_stop_ordered': _services, 'db_backup': _db_backup, 'prefs_migrate': _prefs,
                'schema_update': _schema_update, 'artifact_fetch': _artifact}[name]

    def module_kwargs(self, name):
        return self.util(name).module_kwargs()

    def validate(self, name, params):
        """The options of module ``name`` checked against its own argument spec (StepFailed when wrong)."""
        SubModule(self.module, name, self.module_kwargs(name), params)

    def run_module(self, name, params):
        return run_module(self.module, name, self.util(name), params)

    def services(self, state, services, supervisor_config=None, only=None, drain=None):
        return self.run_module('service_stop_ordered', dict(services=services, state=state, supervisor_config=supervisor_config,
                                                            only=only or None, drain=drain))

    @staticmethod
    def run(argv, cwd=None, timeout=60.0):
        """dict(rc, stdout, stderr) of ``argv``; StepFailed when it cannot start or does not end within ``timeout``."""
        try:
            proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StepFailed('%s gave no answer within %.0fs' % (argv[0], timeout)) from exc
        except OSError as exc:
            raise StepFailed('cannot run %s: %s' % (argv[0], exc)) from exc
        return dict(rc=proc.returncode, stdout=proc.stdout.decode('utf-8', 'replace'),
                    stderr=proc.stderr.decode('utf-8', 'replace'))

    @staticmethod
    def free_space(path):
        info = os.statvfs(path)
        return info.f_bavail * info.f_frsize

    @staticmethod
    def clock():
        now = datetime.datetime.now(datetime.timezone.utc)
        return dict(utc=now.isoformat(timespec='milliseconds'), epoch=time.time(),
                    timezone=time.tzname[1 if time.localtime().tm_isdst > 0 else 0])
