# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade engine: every step of a server's or a client's upgrade, and the rollback, each written once.

What decides (which steps are pending, what a step records, what a rollback must restore) is here; what touches the
host goes through a host object (:class:`~host.PosixHost` inside the module; a Windows host implements the same
methods). Each step that is one of the collection's modules (service_stop_ordered, db_backup, prefs_migrate,
schema_update) runs that module's own code with its options validated against its own argument spec.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import traceback

from ansible.module_utils.common.parameters import remove_values
from ansible_collections.clinops.upgrade.plugins.module_utils import artifact as _artifact
from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom
from ansible_collections.clinops.upgrade.plugins.module_utils import installer as _installer
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal
from ansible_collections.clinops.upgrade.plugins.module_utils import paths as _paths
from ansible_collections.clinops.upgrade.plugins.module_utils import queues as _queues
from ansible_collections.clinops.upgrade.plugins.module_utils import release_flow as _flow
from ansible_collections.clinops.upgrade.plugins.module_utils import sessions as _sessions
from ansible_collections.clinops.upgrade.plugins.module_utils.service import procs as _services
from ansible_collections.clinops.upgrade.plugins.module_utils.host import (  # pylint: disable=unused-import
    PosixHost, StepFailed, SubModule, extract, fsync_dir, run_module)

# tasks_stop, warn, lock, update, unlock, relogin and tasks_start are a product's own flow (option flow,
# release_flow.py): skipped without it.
STEPS = ('tasks_stop', 'stage', 'configure', 'migrate_pre', 'queues', 'backup_online', 'users', 'warn', 'lock', 'stop', 'backup',
         'swap', 'install', 'prefs', 'migrate_offline', 'update', 'start', 'unlock', 'verify', 'restart_after_verify', 'relogin',
         'migrate_post', 'post_jobs', 'backup_after', 'cleanup', 'tasks_start')
BEFORE_STOP_STEPS = ('stage', 'configure', 'migrate_pre', 'queues', 'backup_online', 'users')
DOWNTIME_STEPS = ('stop', 'backup', 'swap', 'install', 'prefs', 'migrate_offline', 'start', 'verify', 'restart_after_verify')
AFTER_STEPS = ('migrate_post', 'post_jobs', 'backup_after', 'cleanup')
# A failure in or after one of these needs the rollback (services stopped or the installation moved).
ROLLBACK_STEPS = STEPS[STEPS.index('stop'):]
# The pre-upgrade backup is restored when one of these touched the schema (pre migrations are additive, kept).
SCHEMA_STEPS = ('install', 'migrate_offline', 'update', 'migrate_post')  # install: a vendor's installer upgrades the schema
MIGRATE_PHASES = ('pre', 'offline', 'post')
CHECK_TYPES = ('command', 'tcp', 'dicom')
ANSWER_CHARS = 300  # a health check's answer in the journal and the report is cut to this
SCRIPT_UNSAFE = re.compile(r'["$`\\\n\r\0]')


def read_version(root, version_file, host=None):
    """First line of the installation's version file, or None."""
    text = (host or PosixHost).read_text(os.path.join(root, version_file))
    return ((text or '').splitlines() or [''])[0].strip() or None


def next_old_dir(root, suffix, host=None):
    """<root><suffix>NNNN with the number after the highest one kept so far."""
    parent, base = os.path.split(root.rstrip('/'))
    pattern = re.compile('^' + re.escape(base + suffix) + '([0-9]{4})$')
    numbers = [int(m.group(1)) for m in (pattern.match(n) for n in (host or PosixHost).listdir(parent or '.')) if m]
    return os.path.join(parent, '%s%s%04d' % (base, suffix, max(numbers + [0]) + 1))


def start_script(script, root, interpreter, product, target):
    """A start script as the role's template wrote it: cd to the installation, exec the program with its arguments."""
    args = ''.join(' "%s"' % ((root + '/' + a) if a.startswith('properties/') else a) for a in script.get('args') or [])
    return ('#!/bin/sh\n# Ansible managed\n# %s %s: start %s\ncd "%s" || exit 1\nexec "%s" "%s/%s"%s\n'
            % (product, target, script['program'], root, interpreter, root, script['program'], args))


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


def migrate_params(migrate, phase='offline'):
    """schema_update's options for one phase (a vendor tool, O(command), runs whole: no phase)."""
    return dict(migrate) if migrate.get('command') else dict(migrate, phase=phase)


def restore_params(backup):
    """db_backup's options that restore the pre-upgrade backup (the options of taking it, without verify and keep)."""
    return dict(((k, v) for k, v in backup.items() if k not in ('verify', 'keep')), state='restored')


def script_problems(scripts):
    errors = []
    for index, script in enumerate(scripts):
        dest = script.get('dest') or ''
        if not dest or os.path.isabs(dest) or '..' in dest.split('/'):
            errors.append('start_scripts[%d]: dest must be a path inside the release, not %r' % (index, dest))
        for value in [script.get('program') or ''] + list(script.get('args') or []):
            if SCRIPT_UNSAFE.search(value):
                errors.append('start_scripts[%d]: %r would need shell quoting (", $, `, \\ or a line break)' % (index, value))
    return errors


def path_problems(p):
    """No path option may carry ``..``; the folder names inside the archives must be plain relative paths."""
    problems = []
    for key in ('journal', 'install_root', 'staged', 'artifact', 'staging_dir', 'old_artifact', 'supervisor_config'):
        try:
            _paths.check_option_path(p.get(key), key)
        except _paths.PathEscape as exc:
            problems.append(str(exc))
    for key in ('top_dir', 'old_top_dir', 'defaults_dir'):
        if p.get(key):
            try:
                _paths.split_relative(p[key], key)
            except _paths.PathEscape as exc:
                problems.append(str(exc))
    return problems


def share_login_password(module):
    """Give the module's login_password to the step options that connect to the database without one of their own, and mask
    every password in them from here on (before any of them is checked: a refusal of the input prints them too)."""
    p = module.params
    if isinstance(p.get('artifact_source'), dict):
        for key in ('url_username', 'url_password'):
            if p.get('artifact_' + key) is not None:
                p['artifact_source'][key] = p['artifact_' + key]
        if p['artifact_source'].get('url_password') not in (None, ''):
            module.no_log_values.add(str(p['artifact_source']['url_password']))
    targets = [p.get('backup'), p.get('backup_after'), p.get('migrate')]
    for key in ('drain', 'queues', 'installer'):
        if isinstance(p.get(key), dict) and isinstance(p[key].get('connection'), dict):
            targets.append(p[key]['connection'])
    for options in targets:
        if not isinstance(options, dict):
            continue
        if options.get('login_password') is None and p.get('login_password') is not None:
            options['login_password'] = p['login_password']
        if options.get('login_password') not in (None, ''):
            module.no_log_values.add(str(options['login_password']))


def masked(module, text):
    """``text`` with every no_log value of ``module`` replaced, for what is written to files (the journal)."""
    values = getattr(module, 'no_log_values', None)
    return remove_values(text, values) if values else text


def validate_steps(module, host=None):
    """Every input problem of every step, found before the first step stops anything (secrets get masked too)."""
    host = host or PosixHost(module)
    p = module.params
    errors = []
    rollback = p['op'] == 'rollback'
    if [s for s in STEPS if s in p['steps']] != list(p['steps']):
        errors.append('steps must keep the order %s' % ', '.join(STEPS))
    isabs = getattr(host, 'isabs', os.path.isabs)  # a Windows host also takes C:/... paths
    for key in ('journal', 'install_root', 'staged', 'artifact', 'staging_dir', 'old_artifact'):
        if p.get(key) and not isabs(p[key]):
            errors.append('%s must be an absolute path, not %r' % (key, p[key]))
    errors.extend(path_problems(p))
    release = p.get('artifact') or p.get('artifact_source')
    if not rollback and 'stage' in p['steps'] and not (release and p.get('staging_dir') and p.get('top_dir')):
        errors.append('the step stage needs artifact (or artifact_source), staging_dir and top_dir')
    if p.get('artifact_source') and 'dest' in p['artifact_source']:
        errors.append('artifact_source must not set dest: upgrade_cutover downloads into staging_dir')
    elif p.get('artifact_source') and not rollback:
        errors.extend('artifact_source: %s' % e for e in _artifact.problems(p['artifact_source']))
    if p.get('users') and not rollback:
        errors.extend(_sessions.problems(p['users']))
    if not rollback and 'cleanup' in p['steps'] and not p.get('staging_dir'):
        errors.append('the step cleanup needs staging_dir')
    if p.get('staging_dir') and os.path.normpath(p['staging_dir']) in (os.path.normpath(p['install_root']), '/'):
        errors.append('staging_dir must be a folder of its own, beside the installation')
    if p['verify_wait'] < 0:
        errors.append('verify_wait must be 0 or more seconds')
    if not re.match(r'^[^/\0]+$', p['old_suffix'] or ''):
        errors.append('old_suffix must be a non-empty file name part without "/"')
    for key, forbidden in (('prefs', ('src', 'dest')), ('migrate', ('phase',)), ('backup', ('state',)),
                           ('backup_after', ('state',))):
        given = [k for k in forbidden if k in (p[key] or {})]
        if given:
            errors.append('%s must not set %s: upgrade_cutover sets it' % (key, ', '.join(given)))
    errors.extend(script_problems(p['start_scripts']))
    errors.extend(_installer.problems(p) + _queues.problems(p.get('queues'), p.get('web_sessions')))
    errors.extend(_flow.flow_problems(p.get('flow')))
    if p['start_scripts'] and not p['start_script_interpreter'] and 'configure' in p['steps']:
        errors.append('the step configure needs start_script_interpreter for start_scripts')
    uses_services = rollback or 'stop' in p['steps'] or 'start' in p['steps'] or (
        'restart_after_verify' in p['steps'] and p['restart_after_verify'])
    if uses_services and not rollback and not p['services']:
        errors.append('services must list the services for the steps stop and start and for restart_after_verify')
    if errors:
        return errors
    subs = []
    if uses_services and p['services']:
        subs.append(('service_stop_ordered', dict(services=p['services'], state='stopped',
                                                  supervisor_config=p['supervisor_config'], drain=p['drain'])))
    if p['backup']:
        subs.append(('db_backup', restore_params(p['backup']) if rollback else dict(p['backup'], state='present')))
    if p['backup_after'] and not rollback:
        subs.append(('db_backup', dict(p['backup_after'], state='present')))
    if p.get('artifact_source') and not rollback and p.get('staging_dir'):
        subs.append(('artifact_fetch', dict(p['artifact_source'], dest=p['staging_dir'])))
    if p['prefs'] and p['prefs'].get('items') and not rollback:
        subs.append(('prefs_migrate', dict(p['prefs'], src=p['install_root'], dest=p['install_root'])))
    if p['migrate'] and not rollback:
        subs.append(('schema_update', migrate_params(p['migrate'])))
    for name, params in subs:
        try:
            host.validate(name, params)
        except StepFailed as exc:
            errors.append(exc.msg)
    return errors


class Cutover:
    """Every step of an upgrade, journaled one by one (a rerun skips the done ones), and the rollback."""

    def __init__(self, module, host=None):
        self.module = module
        self.host = host or PosixHost(module)
        self.p = module.params
        # the journal and the lock are files on the host (a Windows host reads and writes them with its modules)
        opener = getattr(self.host, 'journal', None) or _journal.Journal
        self.journal = opener(self.p['journal'], self.p['target'], self.p['run_id'])
        self.data = dict(self.journal.attempt['data'])
        self.steps = []
        self.expect_version = self.p['target']
        self.flow = _flow.Flow(self)

    # -- the steps ------------------------------------------------------------------------------------------------
    def services(self, state, only=None):
        return self.host.services(state, self.p['services'], supervisor_config=self.p['supervisor_config'], only=only,
                                  drain=self.p['drain'] if state == 'stopped' else None)

    @property
    def staged(self):
        return self.p.get('staged') or self.data.get('staged') or ''

    def refuse_links(self, *labelled):
        """Refuse when one of the ``(label, path)`` is a symlink: the swap and the clean-up move real folders only."""
        for label, path in labelled:
            if path and self.host.islink(path):
                raise StepFailed('%s %s is a symlink (to %s); the swap moves and removes real folders only, nothing was moved'
                                 % (label, path, self.host.readlink(path)))

    def do_stage(self):
        host, staging = self.host, self.p['staging_dir'].rstrip('/')
        if host.islink(staging) or (host.exists(staging) and not host.isdir(staging)):
            raise StepFailed('%s is not a folder (a symlink or a file); nothing was unpacked or removed' % staging)
        if host.islink(os.path.dirname(staging)):
            raise StepFailed('the folder %s holding staging_dir is a symlink (to %s); nothing was unpacked or removed'
                             % (os.path.dirname(staging), host.readlink(os.path.dirname(staging))))
        source, keep = self.p.get('artifact_source'), ()
        if source:  # a download (finished or partial) is kept: it is checked by its sha256, and resumed
            name = _artifact.file_name(source)
            keep = (name, name + '.part')
        if host.isdir(staging):
            for entry in host.listdir(staging):  # what an interrupted staging left behind
                if entry not in keep:
                    host.remove_tree(os.path.join(staging, entry))
        host.makedirs(os.path.join(staging, 'defaults'), 0o750)
        artifact, fetched = self.p.get('artifact'), {}
        if source:
            fetched = host.run_module('artifact_fetch', dict(source, dest=staging))
            artifact = fetched['path']
        if not host.isfile(artifact):
            raise StepFailed('the release %s is missing' % artifact)
        host.unpack(artifact, staging)
        staged = os.path.join(staging, self.p['top_dir'])
        if not host.isdir(staged):
            raise StepFailed('%s has no folder %s at its top' % (artifact, self.p['top_dir']))
        defaults = ''
        old, old_top, defaults_dir = self.p.get('old_artifact'), self.p.get('old_top_dir'), self.p.get('defaults_dir')
        if old and old_top and defaults_dir and host.isfile(old):
            host.unpack(old, os.path.join(staging, 'defaults'), only='%s/%s' % (old_top, defaults_dir.strip('/')))
            defaults = os.path.join(staging, 'defaults', old_top)
        result = dict(staged=staged, defaults=defaults)
        if fetched:
            result.update(downloaded=dict(url=fetched.get('url'), sha256=fetched.get('sha256'), size=fetched.get('size'),
                                          resumed_from=fetched.get('resumed_from'), changed=fetched.get('changed')))
        return result

    def do_configure(self):
        scripts = self.p['start_scripts']
        if not scripts:
            return None
        staged = self.staged
        if not self.host.isdir(staged):
            raise StepFailed('the staged release %r is missing; no start script was written' % staged)
        written = []
        for script in scripts:
            dest = os.path.join(staged, script['dest'])
            self.host.makedirs(os.path.dirname(dest), 0o755)
            self.host.write_atomic(dest, start_script(script, self.p['install_root'].rstrip('/'), self.p['start_script_interpreter'],
                                                      self.p['product'], self.p['target']), 0o755)
            written.append(script['dest'])
        return dict(start_scripts=written)

    def migrate(self, phase):
        migrate = self.p['migrate']
        if not migrate or (migrate.get('command') and phase != self.p['migrate_command_phase']):
            return None
        params = migrate_params(migrate, phase)
        root = self.p['install_root'].rstrip('/')
        if phase == 'pre' and params.get('migrations') and (params['migrations'] + '/').startswith(root + '/'):
            # before the swap the release's migrations are in the staged release, at the same place
            params['migrations'] = self.staged.rstrip('/') + params['migrations'][len(root):]
        result = self.host.run_module('schema_update', params)
        return {'schema_' + phase: [m.get('version') for m in result.get('applied') or []]}

    def do_migrate_pre(self):
        return self.migrate('pre')

    def do_queues(self):
        return _queues.drain(self)

    def do_backup_online(self):
        if not self.p['backup'] or self.p['backup_when'] != 'online':
            return None
        return self.do_backup(online=True)

    def do_users(self):
        if not self.p.get('users'):
            return None
        return _sessions.tell_and_wait(self.host, self.p['users'], self.p['target'], self.p['install_root'], self.module.warn)

    def do_stop(self):
        sessions = _queues.open_sessions(self)
        result = self.services('stopped')
        data = dict(previously_running=result.get('previously_running') or [], stop_order=result.get('order') or [])
        if sessions is not None:
            data['web_sessions_open'] = sessions
        return data

    def do_backup(self, online=False):
        if not self.p['backup'] or (self.p['backup_when'] == 'online') != online:
            return None
        result = self.host.run_module('db_backup', dict(self.p['backup'], state='present'))
        # the checksum too, for the report (its details say which backup a restore would use)
        return dict(backup_path=result.get('backup_path') or '', backup_sha256=(result.get('manifest') or {}).get('sha256') or '')

    def prepare_swap(self):
        root = self.p['install_root']
        if read_version(root, self.p['version_file'], self.host) == self.p['target'] and not self.host.isdir(self.staged):
            return {}
        return dict(old_dir=self.data.get('old_dir') or next_old_dir(root, self.p['old_suffix'], self.host))

    def do_swap(self):
        if _installer.enabled(self.p):
            return None  # the installer layout moves nothing aside: the step install runs the vendor's installer
        host, root, staged = self.host, self.p['install_root'], self.staged
        old_dir = self.data.get('old_dir') or ''
        self.refuse_links(('install_root', root), ('the staged release', staged), ('the old folder', old_dir))
        staging = self.p.get('staging_dir')
        if staging and host.isdir(staged) and not _paths.is_within(host.realpath(staged), host.realpath(staging)):
            raise StepFailed('the staged release %s leads outside staging_dir %s (to %s); nothing was moved'
                             % (staged, staging, host.realpath(staged)))
        if read_version(root, self.p['version_file'], host) == self.p['target'] and not host.isdir(staged):
            return dict(old_dir=old_dir)  # done by an interrupted run
        if not host.isdir(staged):
            raise StepFailed('the staged release %s is missing; nothing was moved' % staged)
        if host.exists(root):
            if host.exists(old_dir):
                raise StepFailed('both %s and %s exist; nothing was moved, a person must look' % (root, old_dir))
            host.rename(root, old_dir)
        host.rename(staged, root)
        return dict(old_dir=old_dir)

    def do_install(self):
        return _installer.install(self)

    def do_prefs(self):
        if not self.p['prefs'] or not self.p['prefs'].get('items') or _installer.enabled(self.p):
            return None
        old_dir = self.data.get('old_dir')
        if not old_dir or not self.host.isdir(old_dir):
            raise StepFailed('the old installation (%r) is not there to carry the preferences from' % old_dir)
        params = dict(self.p['prefs'], src=old_dir, dest=self.p['install_root'])
        if not params.get('defaults') and self.data.get('defaults'):
            params['defaults'] = self.data['defaults']
        result = self.host.run_module('prefs_migrate', params)
        # what the report shows: per file the keys kept from the old one and the keys the new release added
        merged = [dict(path=m.get('path'), keys=m.get('keys') or [], added=m.get('added') or []) for m in result.get('merged') or []]
        return dict(prefs_dropped_keys=result.get('dropped_keys') or [], prefs_merged=merged, prefs_kept=result.get('kept') or [])

    def do_migrate_offline(self):
        return self.migrate('offline')

    def do_start(self):
        self.services('started', self.data.get('previously_running'))
        return {}

    def do_verify(self):
        deadline = time.monotonic() + self.p['verify_wait']
        return dict(checks=[self.check(check, deadline) for check in self.p['checks']])

    def do_restart_after_verify(self):
        if not self.p['restart_after_verify']:
            return None
        self.services('restarted', self.p['restart_after_verify'])
        return dict(restarted=list(self.p['restart_after_verify']))

    def do_migrate_post(self):
        return self.migrate('post')

    def do_post_jobs(self):
        return _installer.post_jobs(self)

    def do_backup_after(self):
        if not self.p['backup_after']:
            return None
        result = self.host.run_module('db_backup', dict(self.p['backup_after'], state='present'))
        return dict(backup_after_path=result.get('backup_path') or '')

    def do_cleanup(self):
        host, staging = self.host, self.p['staging_dir']
        if host.islink(staging):
            self.module.warn('staging_dir %s is a symlink; it is left alone (cleanup never removes through a link)' % staging)
        elif host.isdir(staging):
            host.remove_tree(staging)  # removes links inside as links, never what they point to
        root = self.p['install_root'].rstrip('/')
        parent, base = os.path.split(root)
        pattern = re.compile('^' + re.escape(base + self.p['old_suffix']) + '[0-9]{4}$')
        names = sorted(n for n in host.listdir(parent or '.') if pattern.match(n))
        links = [n for n in names if host.islink(os.path.join(parent, n))]
        if links:
            self.module.warn('%s: symlinks named like old installations are left alone: %s' % (parent, ', '.join(links)))
        olds = [n for n in names if n not in links and host.isdir(os.path.join(parent, n))]
        removed = olds[:max(0, len(olds) - self.p['keep_old'])]
        for name in removed:
            host.remove_tree(os.path.join(parent, name))
        return dict(removed_old=[os.path.join(parent, n) for n in removed])

    # -- health checks --------------------------------------------------------------------------------------------
    def expect(self, check):
        return (check.get('expect') or '').replace('{version}', self.expect_version)

    def check(self, check, deadline):
        """Try one health check once a second until it answers as expected; what it answered, for the journal and
        the report: name, type, answer (the node's or command's words, secrets masked, cut), seconds (the answering
        attempt), attempts and waited_s (from the first attempt)."""
        kind, name = check['type'], check.get('name') or check['type']
        attempt = dict(command=self.check_command, tcp=self.check_tcp, dicom=self.check_dicom)[kind]
        first, attempts = time.monotonic(), 0
        while True:
            started = time.monotonic()
            attempts += 1
            problem, answer = attempt(check, max(1.0, deadline - started))
            if problem is None:
                ended = time.monotonic()
                return dict(name=name, type=kind, answer=masked(self.module, answer or '')[:ANSWER_CHARS],
                            seconds=round(ended - started, 3), attempts=attempts, waited_s=round(ended - first, 3))
            if time.monotonic() + 1.0 > deadline:
                raise StepFailed('health check %r failed for %ss (verify_wait): %s' % (name, self.p['verify_wait'], problem))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    def command_answer(self, check, returncode, out, err):
        """(problem, answer) of a command check: exit code 0 and the expected output, answered by the line that
        matched (else the first line of output)."""
        if returncode != 0:
            return 'exit code %s: %s' % (returncode, (out + err).strip()[-300:]), None
        match = re.search(self.expect(check), out, re.MULTILINE)
        if not match:
            return 'output %r does not match %r' % (out.strip()[-300:], self.expect(check)), None
        if check.get('expect'):
            begin = out.rfind('\n', 0, match.start()) + 1
            end = out.find('\n', match.start())
            line = out[begin:len(out) if end < 0 else end]
        else:
            line = next((text for text in out.splitlines() if text.strip()), '')
        return None, line.strip() or 'exit code 0, no output'

    def check_command(self, check, remaining):
        if getattr(self.host, 'remote', False):  # a host reached from the controller runs the command there
            return self.check_command_on_host(check, remaining)
        try:
            proc = subprocess.run([str(a) for a in check['argv']], cwd=self.p['install_root'], capture_output=True,
                                  timeout=min(remaining, 60.0), check=False)
        except subprocess.TimeoutExpired:
            return 'no answer within %.0fs' % min(remaining, 60.0), None
        except OSError as exc:
            return 'cannot run %s: %s' % (check['argv'][0], exc), None
        return self.command_answer(check, proc.returncode, proc.stdout.decode('utf-8', 'replace'),
                                   proc.stderr.decode('utf-8', 'replace'))

    def check_command_on_host(self, check, remaining):
        try:
            proc = self.host.run(check['argv'], cwd=self.p['install_root'], timeout=min(remaining, 60.0))
        except StepFailed as exc:
            return exc.msg, None
        return self.command_answer(check, proc['rc'], proc['stdout'], proc['stderr'])

    @staticmethod
    def check_tcp(check, remaining):
        # the same probe as the start wait: nothing sent, closed at once with a reset (no half-open connection left
        # for the server to count); the loop in check() tries once a second
        problem = _services.probe_port(check['host'], int(check['port']), timeout=min(remaining, 5.0))
        if problem is not None:
            return 'no connection to %s:%s: %s' % (check['host'], check['port'], problem), None
        return None, 'connection accepted by %s:%s' % (check['host'], check['port'])

    @staticmethod
    def check_dicom(check, remaining):
        if not _dicom.HAS_PYNETDICOM:
            return 'pynetdicom is not installed for the Python that runs the modules on this host', None
        peer = _dicom.merge_peers({'peers': [dict(check, type=None, name=None)], 'calling_aet': 'CLINOPS_UPG'})[0]
        result = _dicom.run_peers([peer], wait=remaining, delay=1.0)[0]
        if result['outcome'] != 'success':
            return _dicom.failure_message([result]), None
        latency = (result.get('latency_ms') or {}).get('median')
        return None, 'C-ECHO status 0x%04X (Success) from %s as %s%s' % (
            result['status'] or 0, _dicom.peer_label(result), result['calling_aet'],
            ' in %.1f ms' % latency if latency is not None else '')

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
                before = self.prepare_swap() if step == 'swap' and not _installer.enabled(self.p) else {}
                self.data.update(before)
                self.journal.record(step, 'started', data=before)
                data = None if self.flow.skips(step) else (getattr(self, 'do_' + step, None) or getattr(self.flow, 'do_' + step))()
            except StepFailed as exc:
                self.fail(step, started, exc.msg, exc.result, result)
            except Exception as exc:  # pylint: disable=broad-except
                self.fail(step, started, '%s: %s' % (type(exc).__name__, exc), {'exception': traceback.format_exc()}, result)
            # one rule everywhere: a step with nothing to do is journaled as skipped
            self.data.update(data or {})
            self.journal.record(step, 'skipped' if data is None else 'ok', data=data or {})
            self.steps.append(dict(step=step, result='skipped' if data is None else 'ok',
                                   seconds=round(time.monotonic() - started, 3)))
        module.exit_json(steps=self.steps, attempt=self.journal.attempt, data=self.data, **result)

    def fail(self, step, started, msg, step_result, result):
        try:
            self.journal.record(step, 'failed', note=masked(self.module, msg)[:2000])
        except OSError as exc:
            msg += '; the journal could not record it either: %s' % exc
        self.steps.append(dict(step=step, result='failed', seconds=round(time.monotonic() - started, 3), message=msg))
        self.module.fail_json(msg='step %s failed: %s' % (step, msg), failed_step=step, step_result=step_result,
                              steps=self.steps, attempt=self.journal.attempt, data=self.data, **result)

    # -- the rollback ---------------------------------------------------------------------------------------------
    def rollback_plan(self):
        """What the rollback must restore, from the journal: the steps done, begun, and the one that failed."""
        attempt, failed_step = self.journal.attempt, self.p['failed_step']
        failed = [e['step'] for e in attempt['entries'] if e.get('result') == 'failed']
        skipped = [e['step'] for e in attempt['entries'] if e.get('result') == 'skipped']  # nothing done, nothing touched
        touched = set([s for s in attempt['done'] if s not in skipped] + attempt['started_steps'] + failed
                      + ([failed_step] if failed_step else []))
        return dict(after_stop=bool(touched & set(ROLLBACK_STEPS)), schema_touched=bool(touched & set(SCHEMA_STEPS)), touched=touched)

    def restore(self, schema_touched):
        """Stop what runs of the new version, put the old installation back, restore the database when its schema was
        touched, start the old version's services and verify the old version. Returns what was put back."""
        host, data, root = self.host, self.data, self.p['install_root'].rstrip('/')
        if self.p['services']:
            self.host.services('stopped', self.p['services'], supervisor_config=self.p['supervisor_config'])
        old_dir, put_back = data.get('old_dir') or '', False
        if old_dir and host.isdir(old_dir) and not host.islink(old_dir):
            if host.exists(root):
                failed_dir = '%s_failed_%s_%s' % (root, self.p['target'], self.journal.attempt['number'])
                if host.exists(failed_dir):
                    raise StepFailed('both %s and %s exist; the old installation was not put back' % (root, failed_dir))
                host.rename(root, failed_dir)
            host.rename(old_dir, root)
            put_back = True
        restored_from = None
        if schema_touched and self.p['backup']:
            params = restore_params(self.p['backup'])
            if data.get('backup_path'):
                params['backup'] = data['backup_path']
            self.host.run_module('db_backup', params)
            restored_from = data.get('backup_path') or 'the pre-upgrade backup'
        if _installer.enabled(self.p):
            self.data['reinstalled_with'] = _installer.reinstall_prior(self)
        if self.p['services']:
            self.host.services('started', self.p['services'], supervisor_config=self.p['supervisor_config'],
                               only=data.get('previously_running'))
        self.expect_version = data.get('from_version') or self.expect_version
        deadline = time.monotonic() + self.p['verify_wait']
        for check in self.p['checks']:
            self.check(check, deadline)
        return put_back, restored_from

    def restored_message(self, plan, put_back, restored_from):
        if not plan['after_stop']:
            return 'nothing was stopped, the old version kept running'
        from_version = self.data.get('from_version') or 'version'
        if self.data.get('reinstalled_with'):
            text = 'the prior version %s was installed again with %s' % (from_version, self.data['reinstalled_with'])
        else:
            text = ('the old installation %s was put back' if put_back else 'the old installation %s stayed in place') % from_version
        if self.p['backup']:
            text += (', the database was restored from %s' % restored_from if restored_from
                     else ', the database was left as it was (its schema was not touched)')
        if self.p['services']:
            text += ', its services were started' + (' and verified' if self.p['checks'] else '')
        elif self.p['checks']:
            text += ' and verified'
        return text

    def rollback(self):
        """Put the host back on the old version after a failed step (the role calls it in its rescue), journaled."""
        module, attempt, p = self.module, self.journal.attempt, self.p
        if not attempt['open']:
            module.fail_json(msg='no open upgrade attempt to %s in %s: nothing to roll back' % (p['target'], p['journal']))
        holder = self.journal.read_holder()
        if holder.get('run_id') not in (None, p['run_id']):
            module.fail_json(msg='the upgrade lock %s is held by run %s, not this run: nothing was rolled back'
                             % (self.journal.lock_file, holder.get('run_id')))
        failure = (p['failure'] or 'failed')[:500]
        if p['failed_step']:
            failure = 'step %s failed: %s' % (p['failed_step'], failure)
        plan = self.rollback_plan()
        result = dict(changed=True, failure=failure, after_stop=plan['after_stop'], schema_touched=plan['schema_touched'],
                      result='rolled_back' if plan['after_stop'] else 'failed')
        if module.check_mode:
            module.exit_json(attempt=attempt, **result)
        if p['failed_step'] and p['failed_step'] not in [e['step'] for e in attempt['entries'] if e.get('result') == 'failed']:
            self.journal.record(p['failed_step'], 'failed', note=masked(self.module, p['failure'] or 'failed')[:2000])
        put_back, restored_from = False, None
        try:
            if plan['after_stop']:
                put_back, restored_from = self.restore(plan['schema_touched'])
            if p['staging_dir']:
                self.host.remove_tree(p['staging_dir'])
        except Exception as exc:  # pylint: disable=broad-except
            why = exc.msg if isinstance(exc, StepFailed) else '%s: %s' % (type(exc).__name__, exc)
            note = '%s; the rollback failed too: %s' % (failure, why[:500])
            if self.flow.active:  # the background tasks start again and the database is unlocked even so
                flow_done, flow_problems = self.flow.after_rollback(plan['touched'], restored_from)
                note += ''.join('; ' + text for text in flow_done + ['but ' + problem for problem in flow_problems])
            self.journal.record('finish', 'failed', note=masked(self.module, note)[:2000])
            self.journal.release_lock()
            module.fail_json(msg='%s; the host needs a person, see %s' % (note, p['journal']), attempt=self.journal.attempt,
                             **dict(result, result='failed'))
        restored = self.restored_message(plan, put_back, restored_from)
        if self.flow.active:  # whatever happened: unlock, tell the users, start the background tasks again
            flow_done, flow_problems = self.flow.after_rollback(plan['touched'], restored_from)
            restored += ''.join('; ' + text for text in flow_done + ['but ' + problem for problem in flow_problems])
        message = '%s; %s' % (failure, restored)
        self.journal.record('finish', result['result'], note=masked(self.module, message)[:2000])
        self.journal.release_lock()
        module.exit_json(restored=restored, message=message, attempt=self.journal.attempt, **result)
