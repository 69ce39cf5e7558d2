# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The installer layout (profile ``layout.mode: installer``): the release is the vendor's installer, which finds the
prior version, uninstalls it, upgrades the database schema and installs itself.  Nothing is moved aside.

* step ``install`` (in the downtime, after the backup): records the database's identity and row counts, runs the
  installer unattended with the profile's arguments while following its log into the journal, then judges the result
  from the installed version, the database's schema version, its identity (the same database, not one dropped and
  created again) and its row counts (no table lost rows except those the profile lists);
* the rollback (after the database was restored from the pre-upgrade backup): the prior version's installer
  (``prior_artifact``) run with ``rollback_args``;
* step ``post_jobs`` (after the verified start, outside the downtime): the profile's follow-up jobs (ImageServer: the
  Study XML rebuild), their progress followed into the journal; a failure is reported, not rolled back.

Placeholders in the arguments: ``{staged}`` (the unpacked installer's folder), ``{install_root}``, ``{log}`` (the
installer's log), ``{version}`` (the version being installed), ``{artifact}``.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.parameters import remove_values
from ansible_collections.clinops.upgrade.plugins.module_utils import dbcheck as _dbcheck
from ansible_collections.clinops.upgrade.plugins.module_utils import followlog as _followlog
from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed

PLACEHOLDERS = ('staged', 'install_root', 'log', 'version', 'artifact')


def enabled(params):
    return bool(params.get('installer'))


def substitute(argv, values):
    out = []
    for arg in argv:
        text = str(arg)
        for key in PLACEHOLDERS:
            text = text.replace('{%s}' % key, str(values.get(key, '{%s}' % key)))
        out.append(text)
    return out


def problems(params):
    """Input errors of the ``installer`` and ``post_jobs`` options, before anything is touched."""
    errors = []
    spec = params.get('installer')
    if spec:
        if not isinstance(spec.get('args'), list) or not spec['args']:
            errors.append('installer.args must be the installer command line (a list)')
        for key in ('rollback_args',):
            if spec.get(key) is not None and not isinstance(spec[key], list):
                errors.append('installer.%s must be a list' % key)
        for key in ('progress_re', 'error_re', 'journal_re'):
            try:
                _followlog.compile_or_none(spec.get(key), 'installer.%s' % key)
            except ValueError as exc:
                errors.append(str(exc))
        for key in ('timeout', 'stall_timeout'):
            if spec.get(key) is not None and (not isinstance(spec[key], int) or spec[key] <= 0):
                errors.append('installer.%s must be a positive number of seconds' % key)
        connection = spec.get('connection')
        if connection is not None and (not isinstance(connection, dict) or not connection.get('engine')):
            errors.append('installer.connection must be the database options, with engine')
        if spec.get('schema_version_query') and not connection:
            errors.append('installer.schema_version_query needs installer.connection')
        if spec.get('may_lose_rows') is not None and not isinstance(spec['may_lose_rows'], list):
            errors.append('installer.may_lose_rows must be a list of table names')
    for index, job in enumerate(params.get('post_jobs') or []):
        if not isinstance(job, dict) or not job.get('name') or not isinstance(job.get('argv'), list) or not job['argv']:
            errors.append('post_jobs[%d] needs name and argv (a list)' % index)
            continue
        for key in ('progress_re', 'error_re'):
            try:
                _followlog.compile_or_none(job.get(key), 'post_jobs[%d].%s' % (index, key))
            except ValueError as exc:
                errors.append(str(exc))
    return errors


def _log_path(engine, kind):
    spec = engine.p['installer']
    if spec.get('log'):
        return spec['log'].replace('{version}', engine.p['target'])
    return os.path.join(os.path.dirname(engine.p['journal']), 'installer-%s-%s-%s.log'
                        % (kind, engine.p['target'], engine.journal.attempt['number']))


def _journal_line(engine, step, pattern):
    keep = _followlog.compile_or_none(pattern, 'journal_re') if pattern else None

    def on_line(line, progress):
        if keep is None or keep.search(line) or progress is not None:
            engine.journal.record(step, 'progress', data={}, note=masked_text(engine, line))
    return on_line


def _run(engine, step, argv, log, cwd, what):
    spec = engine.p['installer']
    try:
        result = _followlog.run_following(engine.host, argv, log_path=log, progress_re=spec.get('progress_re'),
                                          error_re=spec.get('error_re'), stall_timeout=spec.get('stall_timeout'),
                                          timeout=spec.get('timeout') or 3600, cwd=cwd,
                                          on_line=_journal_line(engine, step, spec.get('journal_re')))
    except OSError as exc:
        raise StepFailed('cannot run %s %s: %s' % (what, argv[0], exc)) from exc
    if result['rc'] != 0 or result['ended'] != 'exited':
        raise StepFailed('%s; its log: %s' % (_followlog.describe(result, what), log),
                         dict(installer_log=log, installer_lines=result['lines'][-20:]))
    return result


def database_state(spec):
    connection = spec.get('connection')
    if not connection or not spec.get('check_database', True):
        return {}
    try:
        return dict(identity=_dbcheck.identity(connection), rows=_dbcheck.row_counts(connection))
    except _dbcheck.QueryFailed as exc:
        return dict(identity=['none'], rows={}, problem=str(exc))


def install(engine):
    """The step ``install``: the new release's installer, unattended, judged from the version, schema and database."""
    if not enabled(engine.p):
        return None
    spec, host, target = engine.p['installer'], engine.host, engine.p['target']
    root = engine.p['install_root'].rstrip('/')
    staged = engine.staged
    if not staged or not host.isdir(staged):
        raise StepFailed('the unpacked installer %r is missing; the installer did not run' % staged)
    before = engine.data.get('db_before') or database_state(spec)
    if before.get('problem'):
        raise StepFailed('the database could not be read before the installer, the installer did not run: %s' % before['problem'])
    if before:
        engine.journal.record('install', 'progress', data=dict(db_before=before),
                              note='before the installer: %d tables, %d rows' % (len(before['rows']), sum(before['rows'].values())))
    log = _log_path(engine, 'upgrade')
    argv = substitute(spec['args'], dict(staged=staged, install_root=root, log=log, version=target,
                                         artifact=engine.p.get('artifact') or ''))
    result = _run(engine, 'install', argv, log, staged, 'the installer of %s' % target)
    problems_found = []
    installed = read_version(host, root, engine.p['version_file'])
    if installed != target:
        problems_found.append('the installed version is %s, not %s' % (installed or 'none', target))
    schema = None
    if spec.get('schema_version_query'):
        expected = str(spec.get('schema_version') or '{version}').replace('{version}', target)
        try:
            schema = _dbcheck.scalar(spec['connection'], spec['schema_version_query'])
        except _dbcheck.QueryFailed as exc:
            schema = None
            problems_found.append('the schema version could not be read: %s' % exc)
        else:
            if schema != expected:
                problems_found.append('the database schema version is %s, not %s' % (schema, expected))
    after = database_state(spec)
    if before:
        connection = spec['connection']
        problems_found.extend(_dbcheck.changes(connection['engine'], connection.get('database'), before, after,
                                               spec.get('may_lose_rows') or []))
    if problems_found:
        raise StepFailed('the installer ended (code 0) but %s; the log: %s' % ('; '.join(problems_found), log),
                         dict(installer_log=log, db_before=before, db_after=after))
    lost = dict((t, before['rows'][t] - n) for t, n in (after.get('rows') or {}).items()
                if before and t in before['rows'] and n < before['rows'][t])
    return dict(installer_log=log, installer_seconds=result['seconds'], installed_version=installed, schema_version=schema,
                db_identity=after.get('identity') or [], db_rows_after=after.get('rows') or {}, db_rows_lost_as_listed=lost)


def reinstall_prior(engine):
    """Rollback: the prior version's installer over whatever the failed one left; returns the artifact it ran."""
    spec, host = engine.p['installer'], engine.host
    prior, top = spec.get('prior_artifact'), spec.get('prior_top_dir')
    from_version = engine.data.get('from_version') or ''
    if not prior or not host.isfile(prior) or not top:
        raise StepFailed('the prior version\'s installer (%s) is not there: the prior version %s was not reinstalled'
                         % (prior or 'not named in the inventory', from_version))
    staging = engine.p.get('staging_dir') or (engine.p['install_root'].rstrip('/') + '_staging')
    if host.exists(staging):
        host.remove_tree(staging)
    host.makedirs(staging, 0o750)
    host.unpack(prior, staging)
    staged = os.path.join(staging, top)
    log = _log_path(engine, 'rollback')
    argv = substitute(spec.get('rollback_args') or spec['args'],
                      dict(staged=staged, install_root=engine.p['install_root'].rstrip('/'), log=log, version=from_version,
                           artifact=prior))
    _run(engine, 'rollback', argv, log, staged, 'the prior installer %s' % os.path.basename(prior))
    installed = read_version(host, engine.p['install_root'], engine.p['version_file'])
    if from_version and installed != from_version:
        raise StepFailed('the prior installer ended but the installed version is %s, not %s' % (installed, from_version))
    return prior


class _ProgressNotes:
    """Journals a job's line each time the progress it shows changes."""

    def __init__(self, engine, name):
        self.engine, self.name, self.last = engine, name, None

    def __call__(self, line, progress):
        if progress is not None and progress != self.last:
            self.last = progress
            self.engine.journal.record('post_jobs', 'progress', data={}, note=masked_text(self.engine, '%s: %s' % (self.name, line)))


def post_jobs(engine):
    """The step ``post_jobs``: each job run and followed; a failure is reported (warning, journal), not rolled back."""
    jobs = engine.p.get('post_jobs') or []
    if not jobs:
        return None
    done = []
    for job in jobs:
        on_line = _ProgressNotes(engine, job['name'])
        argv = substitute(job['argv'], dict(install_root=engine.p['install_root'].rstrip('/'), version=engine.p['target']))
        entry = dict(name=job['name'], result='ok')
        try:
            result = _followlog.run_following(engine.host, argv, log_path=job.get('log'), progress_re=job.get('progress_re'),
                                              error_re=job.get('error_re'), stall_timeout=job.get('stall_timeout'),
                                              timeout=job.get('timeout') or 3600, cwd=engine.p['install_root'], on_line=on_line)
        except OSError as exc:
            result = dict(rc=None, ended='exited', errors=['cannot run %s: %s' % (argv[0], exc)], lines=[], output=[],
                          progress=None, seconds=0)
        entry.update(progress=result['progress'], seconds=result['seconds'])
        if result['rc'] != 0 or result['ended'] != 'exited' or result['errors']:
            entry.update(result='failed', message=_followlog.describe(result, job['name']))
            engine.module.warn('%s failed (reported, not rolled back; the upgrade stands): %s' % (job['name'], entry['message']))
            engine.journal.record('post_jobs', 'progress', data={}, note=masked_text(engine, 'FAILED %s' % entry['message']))
        done.append(entry)
    return dict(post_jobs=done)


def masked_text(engine, text):
    """``text`` without the run's secrets (the module's no_log values), cut for the journal."""
    values = engine.module.no_log_values
    return (remove_values(text, values) if values else text)[:500]


def read_version(host, root, version_file):
    text = host.read_text(os.path.join(root, version_file))
    return ((text or '').splitlines() or [''])[0].strip() or None
