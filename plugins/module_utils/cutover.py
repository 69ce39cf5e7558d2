# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A server's downtime in one process: the steps of upgrade_cutover and the adapter that runs modules in-process.

Each step runs the same code as the collection's module of that name (service_stop_ordered, db_backup, prefs_migrate,
schema_update, the checks of dicom_echo), through :class:`SubModule`: the module's options are validated against its
own argument spec, its ``fail_json``/``exit_json`` end the step instead of the process.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
import traceback
import zipfile

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.clinops.upgrade.plugins.module_utils import db_backup as _db_backup
from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils import prefs as _prefs
from ansible_collections.clinops.upgrade.plugins.module_utils import schema_update as _schema_update
from ansible_collections.clinops.upgrade.plugins.module_utils import service_stop_ordered as _services

STEPS = ('stage', 'stop', 'backup', 'swap', 'prefs', 'migrate_offline', 'start', 'verify', 'cleanup')
DOWNTIME_STEPS = ('stop', 'backup', 'swap', 'prefs', 'migrate_offline', 'start', 'verify')
CHECK_TYPES = ('command', 'tcp', 'dicom')
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


def read_version(root, version_file):
    """First line of the installation's version file, or None."""
    try:
        with open(os.path.join(root, version_file), encoding='utf-8') as handle:
            return (handle.readline() or '').strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def next_old_dir(root, suffix):
    """<root><suffix>NNNN with the number after the highest one kept so far."""
    parent, base = os.path.split(root.rstrip('/'))
    pattern = re.compile('^' + re.escape(base + suffix) + '([0-9]{4})$')
    numbers = [int(m.group(1)) for m in (pattern.match(n) for n in os.listdir(parent or '.')) if m]
    return os.path.join(parent, '%s%s%04d' % (base, suffix, max(numbers + [0]) + 1))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inside(base, name):
    """The path of archive member ``name`` under ``base``, or None when it would leave ``base``."""
    if not name or name.startswith('/') or '\0' in name:
        return None
    path = os.path.normpath(os.path.join(base, name))
    return path if path == base or path.startswith(base.rstrip('/') + '/') else None


def extract(archive, dest, only=None):
    """Unpack a release (.tar, .tar.gz/.tgz/.tar.bz2/.tar.xz, or .zip) into ``dest``; only members under ``only`` when
    given. Members that would leave ``dest`` (absolute, ``..``, links pointing out, devices) are refused, not skipped."""
    dest = os.path.abspath(dest)
    prefix = only.strip('/') + '/' if only else None

    def wanted(name):
        name = name.lstrip('./') if name.startswith('./') else name
        return prefix is None or name == prefix.rstrip('/') or name.startswith(prefix)

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if wanted(m.filename)]
            bad = [m.filename for m in members if _inside(dest, m.filename) is None]
            if bad:
                raise StepFailed('%s has members that would leave the staging folder: %s' % (archive, ', '.join(bad[:5])))
            for member in members:
                zipped.extract(member, dest)
        return len(members)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if wanted(m.name)]
            bad = []
            for member in members:
                target = _inside(dest, member.name)
                if target is None or member.isdev() or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    bad.append(member.name)
                elif member.issym() and _inside(dest, os.path.join(os.path.dirname(member.name), member.linkname)) is None:
                    bad.append('%s -> %s' % (member.name, member.linkname))
                elif member.islnk() and _inside(dest, member.linkname) is None:
                    bad.append('%s => %s' % (member.name, member.linkname))
            if bad:
                raise StepFailed('%s has members that would leave the staging folder: %s' % (archive, ', '.join(bad[:5])))
            for member in members:
                member.mode &= ~(stat.S_ISUID | stat.S_ISGID)
                if hasattr(tarfile, 'data_filter'):
                    tar.extract(member, dest, filter='data')
                else:  # Python before 3.11.4: the checks above are the filter
                    tar.extract(member, dest)  # nosec
        return len(members)
    except (tarfile.TarError, EOFError, zipfile.BadZipFile) as exc:
        raise StepFailed('cannot unpack %s: %s' % (archive, exc)) from exc


def check_problems(checks):
    """Input errors in the health checks, before anything is stopped."""
    errors = []
    for index, check in enumerate(checks):
        where = 'checks[%d] %s' % (index, check.get('name') or '')
        kind = check.get('type')
        if kind == 'command':
            if not check.get('argv'):
                errors.append('%s: a command check needs argv' % where)
            if check.get('expect'):
                try:
                    re.compile(check['expect'])
                except re.error as exc:
                    errors.append('%s: expect is not a regular expression: %s' % (where, exc))
        elif kind in ('tcp', 'dicom'):
            port = check.get('port')
            if not check.get('host') or not isinstance(port, int) or not 1 <= port <= 65535:
                errors.append('%s: a %s check needs host and a port of 1-65535 (got %r)' % (where, kind, port))
        if kind == 'dicom':
            peer = _dicom.merge_peers({'peers': [dict(check, type=None, name=None)], 'calling_aet': 'CLINOPS_UPG'})[0]
            errors.extend('%s: %s' % (where, problem) for problem in _dicom.check_peer(peer))
    return errors


def migrate_params(migrate):
    """schema_update's options for the offline phase (a vendor tool, O(command), runs whole: no phase)."""
    return dict(migrate) if migrate.get('command') else dict(migrate, phase='offline')


def validate_steps(module):
    """Every input problem of every step, found before the first step stops anything (secrets get masked too)."""
    p = module.params
    errors = []
    if [s for s in STEPS if s in p['steps']] != list(p['steps']):
        errors.append('steps must keep the order %s' % ', '.join(STEPS))
    for key in ('journal', 'install_root', 'staged', 'artifact', 'staging_dir', 'old_artifact'):
        if p.get(key) and not os.path.isabs(p[key]):
            errors.append('%s must be an absolute path, not %r' % (key, p[key]))
    if 'stage' in p['steps'] and not (p.get('artifact') and p.get('staging_dir') and p.get('top_dir')):
        errors.append('the step stage needs artifact, staging_dir and top_dir')
    if 'cleanup' in p['steps'] and not p.get('staging_dir'):
        errors.append('the step cleanup needs staging_dir')
    if p.get('staging_dir') and os.path.normpath(p['staging_dir']) in (os.path.normpath(p['install_root']), '/'):
        errors.append('staging_dir must be a folder of its own, beside the installation')
    if p['verify_wait'] < 0:
        errors.append('verify_wait must be 0 or more seconds')
    if not re.match(r'^[^/\0]+$', p['old_suffix'] or ''):
        errors.append('old_suffix must be a non-empty file name part without "/"')
    for key, forbidden in (('prefs', ('src', 'dest')), ('migrate', ('phase',)), ('backup', ('state',))):
        given = [k for k in forbidden if k in (p[key] or {})]
        if given:
            errors.append('%s must not set %s: upgrade_cutover sets it' % (key, ', '.join(given)))
    uses_services = 'stop' in p['steps'] or 'start' in p['steps'] or p['restart_after_verify']
    if uses_services and not p['services']:
        errors.append('services must list the services for the steps stop and start and for restart_after_verify')
    if errors:
        return errors
    subs = []
    if uses_services:
        subs.append(('service_stop_ordered', _services,
                     dict(services=p['services'], state='stopped', supervisor_config=p['supervisor_config'], drain=p['drain'])))
    if p['backup']:
        subs.append(('db_backup', _db_backup, dict(p['backup'], state='present')))
    if p['prefs']:
        subs.append(('prefs_migrate', _prefs, dict(p['prefs'], src=p['install_root'], dest=p['install_root'])))
    if p['migrate']:
        subs.append(('schema_update', _schema_update, migrate_params(p['migrate'])))
    for name, util, params in subs:
        try:
            SubModule(module, name, util.module_kwargs(), params)
        except StepFailed as exc:
            errors.append(exc.msg)
    return errors


class Cutover:
    """The steps from the first stop to the verified start, journaled one by one; a rerun skips the done ones."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.journal = _journal.Journal(self.p['journal'], self.p['target'], self.p['run_id'])
        self.data = dict(self.journal.attempt['data'])
        self.steps = []

    # -- the steps ------------------------------------------------------------------------------------------------
    def service_params(self, state, only=None):
        return dict(services=self.p['services'], state=state, supervisor_config=self.p['supervisor_config'],
                    only=only or None, drain=self.p['drain'] if state == 'stopped' else None)

    def do_stop(self):
        result = run_module(self.module, 'service_stop_ordered', _services, self.service_params('stopped'))
        return dict(previously_running=result.get('previously_running') or [], stop_order=result.get('order') or [])

    def do_backup(self):
        if not self.p['backup']:
            return None
        result = run_module(self.module, 'db_backup', _db_backup, dict(self.p['backup'], state='present'))
        return dict(backup_path=result.get('backup_path') or '')

    @property
    def staged(self):
        return self.p.get('staged') or self.data.get('staged') or ''

    def do_stage(self):
        staging = self.p['staging_dir']
        if os.path.islink(staging) or (os.path.exists(staging) and not os.path.isdir(staging)):
            raise StepFailed('%s is not a folder; nothing was unpacked' % staging)
        if os.path.isdir(staging):
            shutil.rmtree(staging)  # what an interrupted staging left behind
        os.makedirs(os.path.join(staging, 'defaults'), 0o750)
        if not os.path.isfile(self.p['artifact']):
            raise StepFailed('the release %s is missing' % self.p['artifact'])
        extract(self.p['artifact'], staging)
        staged = os.path.join(staging, self.p['top_dir'])
        if not os.path.isdir(staged):
            raise StepFailed('%s has no folder %s at its top' % (self.p['artifact'], self.p['top_dir']))
        defaults = ''
        old, old_top, defaults_dir = self.p.get('old_artifact'), self.p.get('old_top_dir'), self.p.get('defaults_dir')
        if old and old_top and defaults_dir and os.path.isfile(old):
            extract(old, os.path.join(staging, 'defaults'), only='%s/%s' % (old_top, defaults_dir.strip('/')))
            defaults = os.path.join(staging, 'defaults', old_top)
        return dict(staged=staged, defaults=defaults)

    def do_cleanup(self):
        staging = self.p['staging_dir']
        if os.path.isdir(staging) and not os.path.islink(staging):
            shutil.rmtree(staging)
        root = self.p['install_root'].rstrip('/')
        parent, base = os.path.split(root)
        pattern = re.compile('^' + re.escape(base + self.p['old_suffix']) + '[0-9]{4}$')
        olds = sorted(n for n in os.listdir(parent or '.') if pattern.match(n) and os.path.isdir(os.path.join(parent, n)))
        removed = olds[:max(0, len(olds) - self.p['keep_old'])]
        for name in removed:
            shutil.rmtree(os.path.join(parent, name))
        return dict(removed_old=[os.path.join(parent, n) for n in removed])

    def prepare_swap(self):
        root = self.p['install_root']
        if read_version(root, self.p['version_file']) == self.p['target'] and not os.path.isdir(self.staged):
            return {}
        return dict(old_dir=self.data.get('old_dir') or next_old_dir(root, self.p['old_suffix']))

    def do_swap(self):
        root, staged = self.p['install_root'], self.staged
        old_dir = self.data.get('old_dir') or ''
        if read_version(root, self.p['version_file']) == self.p['target'] and not os.path.isdir(staged):
            return dict(old_dir=old_dir)  # done by an interrupted run
        if not os.path.isdir(staged):
            raise StepFailed('the staged release %s is missing; nothing was moved' % staged)
        if os.path.lexists(root):
            if os.path.lexists(old_dir):
                raise StepFailed('both %s and %s exist; nothing was moved, a person must look' % (root, old_dir))
            os.rename(root, old_dir)
        os.rename(staged, root)
        fsync_dir(os.path.dirname(root.rstrip('/')) or '.')
        return dict(old_dir=old_dir)

    def do_prefs(self):
        if not self.p['prefs']:
            return None
        old_dir = self.data.get('old_dir')
        if not old_dir or not os.path.isdir(old_dir):
            raise StepFailed('the old installation (%r) is not there to carry the preferences from' % old_dir)
        params = dict(self.p['prefs'], src=old_dir, dest=self.p['install_root'])
        if not params.get('defaults') and self.data.get('defaults'):
            params['defaults'] = self.data['defaults']
        result = run_module(self.module, 'prefs_migrate', _prefs, params)
        return dict(prefs_dropped_keys=result.get('dropped_keys') or [])

    def do_migrate_offline(self):
        if not self.p['migrate']:
            return None
        result = run_module(self.module, 'schema_update', _schema_update, migrate_params(self.p['migrate']))
        return dict(schema_offline=[m.get('version') for m in result.get('applied') or []])

    def do_start(self):
        run_module(self.module, 'service_stop_ordered', _services,
                   self.service_params('started', self.data.get('previously_running')))
        return {}

    def do_verify(self):
        deadline = time.monotonic() + self.p['verify_wait']
        passed = [self.check(check, deadline) for check in self.p['checks']]
        if self.p['restart_after_verify']:
            run_module(self.module, 'service_stop_ordered', _services,
                       self.service_params('restarted', self.p['restart_after_verify']))
        return dict(checks=passed)

    # -- health checks --------------------------------------------------------------------------------------------
    def expect(self, check):
        return (check.get('expect') or '').replace('{version}', self.p['target'])

    def check(self, check, deadline):
        kind, name = check['type'], check.get('name') or check['type']
        attempt = dict(command=self.check_command, tcp=self.check_tcp, dicom=self.check_dicom)[kind]
        while True:
            started = time.monotonic()
            problem = attempt(check, max(1.0, deadline - started))
            if problem is None:
                return name
            if time.monotonic() + 1.0 > deadline:
                raise StepFailed('health check %r failed for %ss (verify_wait): %s' % (name, self.p['verify_wait'], problem))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def check_command(self, check, remaining):
        try:
            proc = subprocess.run([str(a) for a in check['argv']], cwd=self.p['install_root'], capture_output=True,
                                  timeout=min(remaining, 60.0), check=False)
        except subprocess.TimeoutExpired:
            return 'no answer within %.0fs' % min(remaining, 60.0)
        except OSError as exc:
            return 'cannot run %s: %s' % (check['argv'][0], exc)
        out = proc.stdout.decode('utf-8', 'replace')
        if proc.returncode != 0:
            return 'exit code %s: %s' % (proc.returncode, (out + proc.stderr.decode('utf-8', 'replace')).strip()[-300:])
        if not re.search(self.expect(check), out, re.MULTILINE):
            return 'output %r does not match %r' % (out.strip()[-300:], self.expect(check))
        return None

    @staticmethod
    def check_tcp(check, remaining):
        # the same probe as the start wait: nothing sent, closed at once with a reset (no half-open connection left
        # for the server to count); the loop in check() tries once a second
        problem = _services.probe_port(check['host'], int(check['port']), timeout=min(remaining, 5.0))
        return None if problem is None else 'no connection to %s:%s: %s' % (check['host'], check['port'], problem)

    @staticmethod
    def check_dicom(check, remaining):
        if not _dicom.HAS_PYNETDICOM:
            return 'pynetdicom is not installed for the Python that runs the modules on this host'
        peer = _dicom.merge_peers({'peers': [dict(check, type=None, name=None)], 'calling_aet': 'CLINOPS_UPG'})[0]
        result = _dicom.run_peers([peer], wait=remaining, delay=1.0)[0]
        return None if result['outcome'] == 'success' else _dicom.failure_message([result])

    # -- the run --------------------------------------------------------------------------------------------------
    def run(self):
        module, attempt = self.module, self.journal.attempt
        if not attempt['open']:
            module.fail_json(msg='no open upgrade attempt to %s in %s: the role records the step begin first'
                             % (self.p['target'], self.p['journal']))
        pending = [s for s in self.p['steps'] if s not in attempt['done']]
        result = dict(changed=bool(pending), pending=pending, skipped_done=[s for s in self.p['steps'] if s not in pending])
        if module.check_mode or not pending:
            module.exit_json(steps=[], attempt=attempt, **result)
        for step in pending:
            started = time.monotonic()
            try:
                before = self.prepare_swap() if step == 'swap' else {}
                self.data.update(before)
                self.journal.record(step, 'started', data=before)
                data = getattr(self, 'do_' + step)()
            except StepFailed as exc:
                self.fail(step, started, exc.msg, exc.result, result)
            except Exception as exc:  # pylint: disable=broad-except
                self.fail(step, started, '%s: %s' % (type(exc).__name__, exc), {'exception': traceback.format_exc()}, result)
            self.data.update(data or {})
            self.journal.record(step, 'skipped' if data is None else 'ok', data=data or {})
            self.steps.append(dict(step=step, result='skipped' if data is None else 'ok',
                                   seconds=round(time.monotonic() - started, 3)))
        module.exit_json(steps=self.steps, attempt=self.journal.attempt, data=self.data, **result)

    def fail(self, step, started, msg, step_result, result):
        try:
            self.journal.record(step, 'failed', note=msg[:2000])
        except OSError as exc:
            msg += '; the journal could not record it either: %s' % exc
        self.steps.append(dict(step=step, result='failed', seconds=round(time.monotonic() - started, 3), message=msg))
        self.module.fail_json(msg='step %s failed: %s' % (step, msg), failed_step=step, step_result=step_result,
                              steps=self.steps, attempt=self.journal.attempt, data=self.data, **result)
