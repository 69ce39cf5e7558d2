"""Unit tests for upgrade_cutover: the steps in order, journaled; resume; a failing step; input errors before any stop;
the in-process adapter (validation, secrets, exit/fail); the swap on real folders; the health checks on real processes."""
from __future__ import annotations

import json
import os
import re
import socket
import zipfile
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils import cutover
from ansible_collections.clinops.upgrade.plugins.module_utils import host
from ansible_collections.clinops.upgrade.plugins.module_utils import release_flow
from ansible_collections.clinops.upgrade.plugins.module_utils import journal
from ansible_collections.clinops.upgrade.plugins.modules import upgrade_cutover


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patch_exits(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(upgrade_cutover.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(upgrade_cutover.AnsibleModule, 'fail_json', fail_json)


class FakeUtil:
    """Stands for a module's module_utils (module_kwargs + run): records the options it was run with."""

    def __init__(self, spec, answer=None, fail=None):
        self.spec = spec
        self.answer = answer or (lambda params: {})
        self.failure = fail
        self.calls = []

    def module_kwargs(self):
        return dict(argument_spec=self.spec, supports_check_mode=True)

    def run(self, module):
        self.calls.append(dict(module.params))
        if self.failure and self.failure(module.params):
            module.fail_json(msg='boom in %s' % module.name, rc=3)
        module.exit_json(changed=True, **self.answer(module.params))


SERVICE_SPEC = dict(services=dict(type='list', elements='dict', required=True), state=dict(type='str', required=True),
                    supervisor_config=dict(type='path'), only=dict(type='list', elements='str'), drain=dict(type='dict'))
BACKUP_SPEC = dict(engine=dict(type='str', required=True), path=dict(type='path'), dest=dict(type='path', required=True),
                   label=dict(type='str'), verify=dict(type='str'), state=dict(type='str'), backup=dict(type='path'),
                   login_password=dict(type='str', no_log=True))
PREFS_SPEC = dict(src=dict(type='path', required=True), dest=dict(type='path', required=True),
                  items=dict(type='list', elements='dict', required=True), defaults=dict(type='path'),
                  backup_dir=dict(type='path'))
SCHEMA_SPEC = dict(engine=dict(type='str', required=True), path=dict(type='path'), migrations=dict(type='path'),
                   command=dict(type='list', elements='str'), phase=dict(type='str', default='all'))


@pytest.fixture
def fakes(monkeypatch):
    services = FakeUtil(SERVICE_SPEC, lambda p: dict(previously_running=['ds', 'ts'], order=['ds', 'ts'])
                        if p['state'] == 'stopped' else {})
    backup = FakeUtil(BACKUP_SPEC, lambda p: dict(backup_path=os.path.join(p['dest'], 'pre.sqlite')))
    prefs = FakeUtil(PREFS_SPEC, lambda p: dict(dropped_keys=['old.key']))
    schema = FakeUtil(SCHEMA_SPEC, lambda p: dict(applied=[dict(version='4.3.2')]))
    monkeypatch.setattr(host, '_services', services)
    monkeypatch.setattr(host, '_db_backup', backup)
    monkeypatch.setattr(host, '_prefs', prefs)
    monkeypatch.setattr(host, '_schema_update', schema)
    return dict(services=services, backup=backup, prefs=prefs, schema=schema)


@pytest.fixture
def site(tmp_path):
    opt = tmp_path / 'opt'
    root = opt / 'PMOD'
    staged = opt / 'PMOD_staging' / 'pmod-4.4.0'
    for folder, version in ((root, '4.3.0'), (staged, '4.4.0')):
        folder.mkdir(parents=True)
        (folder / 'VERSION').write_text(version + '\n')
    (opt / 'PMOD_old0003').mkdir()
    state = tmp_path / 'state'
    state.mkdir()
    path = str(state / 'journal.jsonl')
    jr = journal.Journal(path, '4.4.0', 'run1')
    jr.record('begin', 'ok', data=dict(from_version='4.3.0', staged=str(staged)))
    return dict(root=str(root), staged=str(staged), journal=path, tmp=tmp_path)


def args(site, **extra):
    out = dict(journal=site['journal'], run_id='run1', target='4.4.0', install_root=site['root'], staged=site['staged'],
               services=[dict(name='ds'), dict(name='ts'), dict(name='ls')],
               backup=dict(engine='sqlite', path='/data/db.sqlite', dest=str(site['tmp'] / 'backups')),
               prefs=dict(items=[dict(path='properties/Config.properties')]),
               migrate=dict(engine='sqlite', path='/data/db.sqlite', migrations=site['root'] + '/sql'))
    out.update(extra)
    return out


def run(arguments, expect=ExitJson):
    with patch_module_args(arguments):
        with pytest.raises(expect) as info:
            upgrade_cutover.main()
    return info.value.args[0]


def entries(site):
    return journal.read_entries(site['journal'])


# the steps of the installer layout and of the queues and follow-up jobs: nothing to do in these unpack-and-swap tests
# steps a PMOD-like profile leaves idle: the installer layout's, ConAktiv's (online backup, users) and a product flow's
IDLE = ('queues', 'backup_online', 'users', 'install', 'post_jobs', 'tasks_stop', 'warn', 'lock', 'update', 'unlock', 'relogin',
        'tasks_start')


def test_all_steps_in_order_journaled_with_what_a_rollback_needs(site, fakes):
    result = run(args(site, restart_after_verify=['ls']))
    assert [s['step'] for s in result['steps']] == list(cutover.DOWNTIME_STEPS)
    assert result['changed'] is True
    ended = [(e['step'], e['result']) for e in entries(site) if e['result'] != 'started']
    assert ended == [('begin', 'ok')] + [(s, 'skipped' if s in IDLE else 'ok') for s in cutover.DOWNTIME_STEPS]
    data = result['attempt']['data']
    old = os.path.join(os.path.dirname(site['root']), 'PMOD_old0004')
    assert data['old_dir'] == old and data['previously_running'] == ['ds', 'ts']
    assert data['backup_path'].endswith('pre.sqlite') and data['schema_offline'] == ['4.3.2']
    assert result['attempt']['done'] == list(cutover.DOWNTIME_STEPS) and result['attempt']['downtime_s'] is not None
    # the swap really happened, numbered after the highest old folder kept
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.4.0'
    assert open(os.path.join(old, 'VERSION')).read().strip() == '4.3.0'
    assert not os.path.exists(site['staged'])
    # each module got its options, and the facts of the earlier steps
    stop, start, restart = fakes['services'].calls
    assert stop['state'] == 'stopped' and start['state'] == 'started' and start['only'] == ['ds', 'ts']
    assert restart['state'] == 'restarted' and restart['only'] == ['ls'] and data['restarted'] == ['ls']
    assert fakes['prefs'].calls[0]['src'] == old and fakes['prefs'].calls[0]['dest'] == site['root']
    assert fakes['schema'].calls[0]['phase'] == 'offline'
    assert fakes['backup'].calls[0]['state'] == 'present'
    # the journal recorded where the old installation goes before it was moved
    swap_start = [e for e in entries(site) if e['step'] == 'swap' and e['result'] == 'started'][0]
    assert swap_start['data']['old_dir'] == old


def test_a_rerun_skips_the_done_steps_and_uses_their_facts(site, fakes):
    jr = journal.Journal(site['journal'], '4.4.0', 'run1')
    jr.record('stop', 'ok', data=dict(previously_running=['ts']))
    jr.record('backup', 'ok', data=dict(backup_path='/b/pre'))
    result = run(args(site))
    assert [s['step'] for s in result['steps']] == ['swap', 'install', 'prefs', 'migrate_offline', 'start', 'verify',
                                                    'restart_after_verify']
    assert result['skipped_done'] == ['stop', 'backup']
    assert fakes['backup'].calls == []
    assert fakes['services'].calls[0]['state'] == 'started' and fakes['services'].calls[0]['only'] == ['ts']


def test_a_swap_interrupted_between_its_two_moves_is_finished(site, fakes):
    old = os.path.join(os.path.dirname(site['root']), 'PMOD_old0004')
    jr = journal.Journal(site['journal'], '4.4.0', 'run1')
    jr.record('stop', 'ok', data=dict(previously_running=['ts']))
    jr.record('backup', 'ok')
    jr.record('swap', 'started', data=dict(old_dir=old))
    os.rename(site['root'], old)  # the crash came after the first move
    run(args(site))
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.4.0'
    assert open(os.path.join(old, 'VERSION')).read().strip() == '4.3.0'


def test_nothing_to_do_when_every_step_is_done(site, fakes):
    jr = journal.Journal(site['journal'], '4.4.0', 'run1')
    for step in cutover.DOWNTIME_STEPS:
        jr.record(step, 'ok')
    result = run(args(site))
    assert result['changed'] is False and result['pending'] == []
    assert not any(f.calls for f in fakes.values())


def test_a_failing_step_is_journaled_and_stops_the_cutover(site, fakes):
    fakes['schema'].failure = lambda params: True
    result = run(args(site), FailJson)
    assert result['failed_step'] == 'migrate_offline'
    assert 'boom in schema_update' in result['msg'] and result['step_result']['rc'] == 3
    assert [s['result'] for s in result['steps']] == ['ok'] * 3 + ['skipped', 'ok', 'failed']  # install: not this layout
    last = entries(site)[-1]
    assert (last['step'], last['result']) == ('migrate_offline', 'failed') and 'boom' in last['message']
    assert len(fakes['services'].calls) == 1  # nothing was started: the caller rolls back
    assert 'migrate_offline' in result['attempt']['started_steps']


def test_an_unexpected_error_is_a_failed_step_not_a_traceback(site, fakes):
    os.rename(site['staged'], site['staged'] + '.gone')
    result = run(args(site), FailJson)
    assert result['failed_step'] == 'swap' and 'staged release' in result['msg']
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.3.0'


def test_swap_refuses_when_both_folders_exist(site, fakes):
    old = os.path.join(os.path.dirname(site['root']), 'PMOD_old0004')
    os.mkdir(old)
    jr = journal.Journal(site['journal'], '4.4.0', 'run1')
    jr.record('swap', 'started', data=dict(old_dir=old))
    result = run(args(site, steps=['swap']), FailJson)
    assert 'both' in result['msg'] and os.path.isdir(site['staged'])


def test_check_mode_predicts_and_touches_nothing(site, fakes):
    before = open(site['journal']).read()
    result = run(dict(args(site), _ansible_check_mode=True))
    assert result['changed'] is True and result['pending'] == list(cutover.DOWNTIME_STEPS)
    assert open(site['journal']).read() == before
    assert not any(f.calls for f in fakes.values())
    assert os.path.isdir(site['staged'])


def test_bad_step_options_fail_before_anything_stops(site, fakes):
    before = open(site['journal']).read()
    result = run(args(site, backup=dict(engine='sqlite'), prefs=dict(items='nope', src='/x')), FailJson)
    assert result['msg'].startswith('invalid input, nothing was stopped')
    assert 'prefs must not set src' in result['msg']
    result = run(args(site, backup=dict(engine='sqlite')), FailJson)
    assert 'db_backup' in result['msg'] and 'dest' in result['msg']
    result = run(args(site, steps=['start', 'stop']), FailJson)
    assert 'order' in result['msg']
    result = run(args(site, checks=[dict(type='command'), dict(type='dicom', host='h', port=104, called_aet='X' * 17)]),
                 FailJson)
    assert 'needs argv' in result['msg'] and '16' in result['msg']
    assert open(site['journal']).read() == before and not any(f.calls for f in fakes.values())


def test_without_an_open_attempt_nothing_runs(tmp_path, fakes):
    path = str(tmp_path / 'journal.jsonl')
    site = dict(journal=path, root=str(tmp_path / 'r'), staged=str(tmp_path / 's'), tmp=tmp_path)
    result = run(args(site), FailJson)
    assert 'no open upgrade attempt' in result['msg'] and not any(f.calls for f in fakes.values())


def test_optional_steps_are_journaled_as_skipped(site, fakes):
    result = run(args(site, backup=None, prefs=None, migrate=None))
    assert [(s['step'], s['result']) for s in result['steps']][1] == ('backup', 'skipped')
    assert [s['result'] for s in result['steps']].count('skipped') == 5  # restart_after_verify: none listed; install
    assert result['attempt']['done'] == list(cutover.DOWNTIME_STEPS)


def test_a_vendor_tool_migration_gets_no_phase(site, fakes):
    run(args(site, migrate=dict(engine='sqlite', path='/d', command=['tool', '--upgrade'])))
    assert fakes['schema'].calls[0]['phase'] == 'all'


class EchoesPassword(FakeUtil):
    """A step whose failure message echoes the password it was given (as a careless driver might)."""

    def run(self, module):
        self.calls.append(dict(module.params))
        module.fail_json(msg='cannot log in with password %s' % module.params['login_password'])


def test_login_password_reaches_the_steps_and_is_masked_in_the_journal(site, fakes, monkeypatch):
    secret = 'Pw-unit-4711-secret'
    schema = EchoesPassword(dict(SCHEMA_SPEC, login_password=dict(type='str', no_log=True)))
    monkeypatch.setattr(host, '_schema_update', schema)
    result = run(args(site, login_password=secret), FailJson)
    assert result['failed_step'] == 'migrate_offline'
    # given to backup and migrate, which set none of their own
    assert fakes['backup'].calls[0]['login_password'] == secret and schema.calls[0]['login_password'] == secret
    last = entries(site)[-1]
    assert (last['step'], last['result']) == ('migrate_offline', 'failed')
    assert secret not in last['message'] and last['message'] == 'cannot log in with password ********'


def test_every_password_is_masked_before_the_input_is_checked(site, fakes, monkeypatch):
    seen = {}

    def fail_json(self, **kwargs):
        seen['no_log_values'] = set(self.no_log_values)
        raise FailJson(kwargs)

    monkeypatch.setattr(upgrade_cutover.AnsibleModule, 'fail_json', fail_json)
    backup = dict(engine='sqlite', path='/data/db.sqlite', dest='/b', login_password='its-own-pw')
    drain = dict(query='SELECT 1', connection=dict(engine='postgresql', database='pmod'))
    result = run(args(site, steps=['start', 'stop'], backup=backup, drain=drain, login_password='the-module-pw'), FailJson)
    assert 'order' in result['msg']
    # refused before any step's options were checked, and still every password is a no_log value
    assert {'its-own-pw', 'the-module-pw'} <= seen['no_log_values']
    assert not any(f.calls for f in fakes.values())


class Parent:
    check_mode = False

    def __init__(self):
        self.no_log_values = set()
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def get_bin_path(self, name):
        return '/bin/' + name


def test_submodule_validates_masks_secrets_and_ends_by_exception():
    parent = Parent()
    sub = cutover.SubModule(parent, 'db_backup', dict(argument_spec=BACKUP_SPEC),
                            dict(engine='sqlite', dest='~/b', login_password='sekret', path=None))
    assert 'sekret' in parent.no_log_values
    assert sub.params['dest'] == os.path.expanduser('~/b') and sub.params['verify'] is None
    assert sub.get_bin_path('sqlite3') == '/bin/sqlite3'
    sub.warn('careful')
    assert parent.warnings == ['db_backup: careful']
    with pytest.raises(cutover.StepFailed) as info:
        cutover.SubModule(parent, 'db_backup', dict(argument_spec=BACKUP_SPEC), dict(engine='sqlite', bogus=1))
    assert 'bogus' in info.value.msg and 'dest' in info.value.msg
    util = FakeUtil(BACKUP_SPEC, fail=lambda p: True)
    with pytest.raises(cutover.StepFailed) as info:
        cutover.run_module(parent, 'db_backup', util, dict(engine='sqlite', dest='/b'))
    assert info.value.msg == 'boom in db_backup' and info.value.result['rc'] == 3


def test_a_broad_except_in_a_module_does_not_swallow_its_exit():
    class Catcher(FakeUtil):
        def run(self, module):
            try:
                module.exit_json(changed=False, found=1)
            except Exception:  # pylint: disable=broad-except
                module.fail_json(msg='swallowed')

    result = cutover.run_module(Parent(), 'x', Catcher(dict(a=dict(type='str'))), {})
    assert result == dict(changed=False, found=1)


def test_next_old_dir_numbers_after_the_highest(tmp_path):
    for name in ('PMOD_old0001', 'PMOD_old0007', 'PMOD_oldX', 'OTHER_old0009'):
        (tmp_path / name).mkdir()
    assert cutover.next_old_dir(str(tmp_path / 'PMOD'), '_old') == str(tmp_path / 'PMOD_old0008')
    assert cutover.next_old_dir(str(tmp_path / 'X'), '_old') == str(tmp_path / 'X_old0001')


def make_cutover(site, **extra):
    class Module:
        check_mode = False
        params = dict(journal=site['journal'], target='4.4.0', run_id='run1', install_root=site['root'],
                      verify_wait=2, checks=[], restart_after_verify=[])

    Module.params.update(extra)
    return cutover.Cutover(Module())


def test_command_checks_want_exit_0_and_the_expected_output(site):
    ok = dict(type='command', name='Echo', argv=[sys.executable, '-c', 'print("OK PMOD-TS 4.4.0")'], expect='^OK PMOD-TS {version}')
    old = dict(ok, argv=[sys.executable, '-c', 'print("OK PMOD-TS 4.3.0")'])
    bad = dict(ok, argv=[sys.executable, '-c', 'import sys; print("no"); sys.exit(2)'])
    checks = make_cutover(site, checks=[ok]).do_verify()['checks']
    assert [(c['name'], c['type'], c['answer'], c['attempts']) for c in checks] == [('Echo', 'command', 'OK PMOD-TS 4.4.0', 1)]
    assert 0 < checks[0]['seconds'] <= checks[0]['waited_s'] < 30
    with pytest.raises(cutover.StepFailed) as info:
        make_cutover(site, checks=[old], verify_wait=1).do_verify()
    assert 'does not match' in info.value.msg and '4.3.0' in info.value.msg
    with pytest.raises(cutover.StepFailed) as info:
        make_cutover(site, checks=[bad], verify_wait=1).do_verify()
    assert 'exit code 2' in info.value.msg


def test_tcp_check_against_a_real_listener_and_a_closed_port(site):
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        assert make_cutover(site).check_tcp(dict(host='127.0.0.1', port=port), 2) == (
            None, 'connection accepted by 127.0.0.1:%d' % port)
    finally:
        listener.close()
    problem, answer = make_cutover(site).check_tcp(dict(host='127.0.0.1', port=port), 2)
    assert 'no connection' in problem and answer is None


def test_a_command_check_answers_with_the_line_that_matched_after_its_retries(site):
    """A node that answers only on the third try: the answer is the matching line of its output, attempts 3."""
    counter = site['tmp'] / 'tries'
    script = ('import pathlib, sys; p = pathlib.Path(%r); n = int(p.read_text()) + 1 if p.exists() else 1; '
              'p.write_text(str(n)); print("starting up"); print("OK PMOD-TS 4.4.0 (build 7)" if n >= 3 else "BUSY"); '
              'print("bye")' % str(counter))
    check = dict(type='command', name='Echo TS', argv=[sys.executable, '-c', script], expect='PMOD-TS {version}')
    answer = make_cutover(site, checks=[check], verify_wait=10).do_verify()['checks'][0]
    assert answer['answer'] == 'OK PMOD-TS 4.4.0 (build 7)' and answer['attempts'] == 3
    assert answer['waited_s'] >= 1.5 and counter.read_text() == '3'
    # without expect: the first line of the output answers
    plain = dict(type='command', name='Plain', argv=[sys.executable, '-c', 'print(); print("  ready  "); print("x")'])
    assert make_cutover(site, checks=[plain]).do_verify()['checks'][0]['answer'] == 'ready'
    silent = dict(type='command', name='Silent', argv=[sys.executable, '-c', 'pass'])
    assert make_cutover(site, checks=[silent]).do_verify()['checks'][0]['answer'] == 'exit code 0, no output'


def test_a_check_answer_never_carries_a_secret_and_is_cut(site):
    check = dict(type='command', name='Echo DB', argv=[sys.executable, '-c', 'print("OK db=pmod password=s3cr3t-pw " + "x" * 900)'],
                 expect='^OK')
    engine = make_cutover(site, checks=[check])
    engine.module.no_log_values = {'s3cr3t-pw'}
    answer = engine.do_verify()['checks'][0]['answer']
    assert 's3cr3t-pw' not in answer and answer.startswith('OK db=pmod password=********')
    assert len(answer) == cutover.ANSWER_CHARS


def test_a_dicom_check_answers_with_the_status_of_a_real_scp(site):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification
    scp = AE(ae_title='PMOD_DS')
    scp.require_called_aet = True
    scp.add_supported_context(Verification)
    server = scp.start_server(('127.0.0.1', 0), block=False)
    port = server.server_address[1]
    try:
        check = dict(type='dicom', name='C-ECHO', host='127.0.0.1', port=port, called_aet='PMOD_DS')
        answer = make_cutover(site, checks=[check], verify_wait=10).do_verify()['checks'][0]
        wrong = dict(check, called_aet='NOBODY')
        with pytest.raises(cutover.StepFailed) as info:
            make_cutover(site, checks=[wrong], verify_wait=1).do_verify()
    finally:
        server.shutdown()
    assert answer['type'] == 'dicom' and answer['attempts'] == 1
    assert re.match(r'C-ECHO status 0x0000 \(Success\) from PMOD_DS@127\.0\.0\.1:%d as CLINOPS_UPG in [0-9.]+ ms$' % port,
                    answer['answer']), answer
    assert 'NOBODY' in info.value.msg


def test_the_verify_step_journals_each_check_answer(site, fakes):
    check = dict(type='command', name='Echo TS', argv=[sys.executable, '-c', 'print("OK PMOD-TS 4.4.0")'],
                 expect='^OK PMOD-TS {version}')
    result = run(args(site, checks=[check]))
    verify = [e for e in entries(site) if e['step'] == 'verify' and e['result'] == 'ok']
    assert len(verify) == 1
    assert [(c['name'], c['answer']) for c in verify[0]['data']['checks']] == [('Echo TS', 'OK PMOD-TS 4.4.0')]
    assert result['data']['checks'][0]['answer'] == 'OK PMOD-TS 4.4.0'


def test_the_journal_is_json_lines_of_the_upgrade_journal_format(site, fakes):
    run(args(site))
    with open(site['journal']) as handle:
        lines = [json.loads(line) for line in handle]
    assert all(set(('step', 'result', 'target', 'attempt', 'run_id', 'started')) <= set(e) for e in lines)
    assert {e['attempt'] for e in lines} == {1}


def test_a_client_without_services_swaps_carries_and_verifies(site, fakes):
    result = run(args(site, services=[], backup=None, migrate=None, steps=['swap', 'prefs', 'verify']))
    assert [s['step'] for s in result['steps']] == ['swap', 'prefs', 'verify']
    assert fakes['services'].calls == [] and len(fakes['prefs'].calls) == 1
    result = run(args(site, services=[]), FailJson)
    assert 'services must list' in result['msg']


def make_tar(path, top, files, extra=()):
    import io
    import tarfile
    with tarfile.open(path, 'w:gz') as tar:
        for name, data in files.items():
            info = tarfile.TarInfo('%s/%s' % (top, name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b'x' * info.size) if info.isfile() else None)
    return path


def client_args(site, **extra):
    out = dict(args(site, services=[], backup=None, migrate=None, staged=None,
                    steps=['stage', 'swap', 'prefs', 'verify', 'cleanup']),
               artifact=make_tar(str(site['tmp'] / 'new.tar.gz'), 'pmod-4.4.0',
                                 {'VERSION': b'4.4.0\n', 'properties/Config.properties': b'a=2\n'}),
               old_artifact=make_tar(str(site['tmp'] / 'old.tar.gz'), 'pmod-4.3.0',
                                     {'VERSION': b'4.3.0\n', 'properties/Config.properties': b'a=1\n', 'bin/big': b'x' * 100}),
               staging_dir=site['root'] + '_staging', top_dir='pmod-4.4.0', old_top_dir='pmod-4.3.0',
               defaults_dir='properties', keep_old=1)
    out.update(extra)
    return out


def test_a_client_stages_swaps_and_cleans_up_in_one_call(site, fakes):
    staging = site['root'] + '_staging'
    os.makedirs(os.path.join(staging, 'leftover'))  # what an interrupted run left
    result = run(client_args(site))
    assert [s['step'] for s in result['steps']] == ['stage', 'swap', 'prefs', 'verify', 'cleanup']
    assert open(os.path.join(site['root'], 'VERSION')).read() == '4.4.0\n'
    data = result['attempt']['data']
    assert data['staged'] == os.path.join(staging, 'pmod-4.4.0')
    assert data['defaults'] == os.path.join(staging, 'defaults', 'pmod-4.3.0')
    # the defaults of the old release: only its properties were unpacked, and prefs_migrate got them
    assert fakes['prefs'].calls[0]['defaults'] == data['defaults']
    assert not os.path.exists(staging)
    # keep_old 1: the old PMOD_old0003 goes, the one this run made stays
    parent = os.path.dirname(site['root'])
    assert sorted(n for n in os.listdir(parent) if '_old' in n) == ['PMOD_old0004']
    assert data['removed_old'] == [os.path.join(parent, 'PMOD_old0003')]


def test_stage_refuses_an_archive_that_escapes_its_folder(site, fakes):
    import tarfile
    evil = tarfile.TarInfo('../../evil')
    evil.size = 1
    link = tarfile.TarInfo('pmod-4.4.0/lib')
    link.type, link.linkname = tarfile.SYMTYPE, '../../../etc'
    for extra in ([evil], [link]):
        bad = make_tar(str(site['tmp'] / 'bad.tar.gz'), 'pmod-4.4.0', {'VERSION': b'4.4.0\n'}, extra)
        result = run(client_args(site, artifact=bad, steps=['stage']), FailJson)
        assert result['failed_step'] == 'stage' and 'would leave the staging folder' in result['msg']
        assert not os.path.exists(str(site['tmp'] / 'evil'))
        assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.3.0'


def test_stage_unpacks_a_zip_and_says_when_the_top_folder_is_missing(site, fakes):
    path = str(site['tmp'] / 'rel.zip')
    with zipfile.ZipFile(path, 'w') as zipped:
        zipped.writestr('pmod-4.4.0/VERSION', '4.4.0\n')
    result = run(client_args(site, artifact=path, top_dir='other', steps=['stage']), FailJson)
    assert 'has no folder other' in result['msg']
    result = run(client_args(site, artifact=path, steps=['stage']))  # the failed step runs again
    assert result['attempt']['data']['staged'].endswith('pmod-4.4.0')
    assert os.path.isfile(os.path.join(result['attempt']['data']['staged'], 'VERSION'))


def test_stage_and_cleanup_need_their_options(site, fakes):
    result = run(args(site, steps=['stage', 'stop']), FailJson)
    assert 'stage needs artifact (or artifact_source), staging_dir and top_dir' in result['msg']
    result = run(client_args(site, staging_dir=site['root']), FailJson)
    assert 'staging_dir must be a folder of its own' in result['msg']


# -- the steps before the stop and after the verified start, and the rollback -----------------------------------------
# every step but a product's own flow (release_flow, its own tests): what a PMOD server runs
CORE_STEPS = [s for s in cutover.STEPS if s not in release_flow.FLOW_STEPS]
SCRIPTS = [dict(dest='bin/start-ts.sh', program='bin/pmod_ts.py', args=['--properties', 'properties/Config.properties'])]


def every_step(site, **extra):
    release = make_tar(str(site['tmp'] / 'new.tar.gz'), 'pmod-4.4.0', {'VERSION': b'4.4.0\n', 'bin/pmod_ts.py': b''})
    out = args(site, steps=list(CORE_STEPS), artifact=release,
               staged=None, staging_dir=site['root'] + '_staging', top_dir='pmod-4.4.0', keep_old=5,
               start_scripts=SCRIPTS, start_script_interpreter='/usr/bin/python3', product='PMOD',
               restart_after_verify=['ls'],
               backup_after=dict(engine='sqlite', path='/data/db.sqlite', dest=str(site['tmp'] / 'backups'), label='post'))
    out.update(extra)
    return out


def test_every_step_of_a_server_in_one_call_journaled_in_order(site, fakes):
    result = run(every_step(site))
    assert [(s['step'], s['result']) for s in result['steps']] == [(s, 'skipped' if s in IDLE else 'ok') for s in CORE_STEPS]
    ended = [e['step'] for e in entries(site) if e['result'] == 'ok']
    assert ended == ['begin'] + [s for s in CORE_STEPS if s not in IDLE]
    # configure wrote the start script into the staged release, which the swap made the installation
    script = os.path.join(site['root'], 'bin', 'start-ts.sh')
    root = site['root']
    assert open(script).read() == (
        '#!/bin/sh\n# Ansible managed\n# PMOD 4.4.0: start bin/pmod_ts.py\ncd "%s" || exit 1\n'
        'exec "/usr/bin/python3" "%s/bin/pmod_ts.py" "--properties" "%s/properties/Config.properties"\n' % (root, root, root))
    assert os.stat(script).st_mode & 0o777 == 0o755
    assert not [n for n in os.listdir(os.path.dirname(script)) if n.endswith('.tmp')]
    # migrate_pre read the staged release's migrations, offline and post the installed ones
    phases = [(c['phase'], c['migrations']) for c in fakes['schema'].calls]
    staged = os.path.join(site['root'] + '_staging', 'pmod-4.4.0')
    assert phases == [('pre', staged + '/sql'), ('offline', root + '/sql'), ('post', root + '/sql')]
    data = result['attempt']['data']
    assert data['schema_pre'] == data['schema_offline'] == data['schema_post'] == ['4.3.2']
    assert [c['label'] for c in fakes['backup'].calls if c.get('label')] == ['post']
    assert data['backup_after_path'].endswith('pre.sqlite') and data['start_scripts'] == ['bin/start-ts.sh']
    assert [c['state'] for c in fakes['services'].calls] == ['stopped', 'started', 'restarted']
    assert not os.path.exists(site['root'] + '_staging')


def test_steps_with_nothing_to_do_are_skipped_and_a_vendor_tool_runs_in_its_phase_only(site, fakes):
    result = run(every_step(site, start_scripts=[], backup_after=None, restart_after_verify=[],
                            migrate=dict(engine='sqlite', path='/d', command=['tool']), migrate_command_phase='post'))
    results = dict((s['step'], s['result']) for s in result['steps'])
    skipped = ['configure', 'migrate_pre', 'queues', 'backup_online', 'users', 'install', 'migrate_offline', 'restart_after_verify',
               'post_jobs', 'backup_after']
    assert [k for k, v in results.items() if v == 'skipped'] == skipped
    assert results['migrate_post'] == 'ok' and len(fakes['schema'].calls) == 1
    assert 'phase' not in fakes['schema'].calls[0] or fakes['schema'].calls[0]['phase'] == 'all'


def test_start_scripts_that_would_need_quoting_or_leave_the_release_are_refused(site, fakes):
    result = run(every_step(site, start_scripts=[dict(dest='../x.sh', program='a'), dict(dest='b.sh', program='$(id)')]),
                 FailJson)
    assert 'dest must be a path inside the release' in result['msg'] and 'shell quoting' in result['msg']
    assert [e['step'] for e in entries(site)] == ['begin']


def fail_at(site, fakes, phase='offline'):
    """Run every step with the schema_update of ``phase`` failing; return the failure."""
    fakes['schema'].failure = lambda params: params.get('phase') == phase
    (site['tmp'] / 'opt' / 'PMOD' / 'marker').write_text('old')
    return run(every_step(site), FailJson)


def rollback_args(site, **extra):
    out = dict(args(site, op='rollback', staging_dir=site['root'] + '_staging', prefs=None, migrate=None,
                    checks=[dict(type='command', name='Echo', argv=[sys.executable, '-c', 'print(open("VERSION").read())'],
                                 expect='^{version}')]),
               failure='step migrate_offline failed: boom')
    out.update(extra)
    return out


def test_rollback_puts_the_old_version_back_and_restores_the_touched_schema(site, fakes):
    failed = fail_at(site, fakes)
    assert failed['failed_step'] == 'migrate_offline'
    fakes['services'].calls.clear()
    result = run(rollback_args(site, failure=failed['msg']))
    assert result['result'] == 'rolled_back' and result['after_stop'] and result['schema_touched']
    # the old installation is back, the failed one kept aside, the staging folder gone
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.3.0'
    assert open(os.path.join(site['root'], 'marker')).read() == 'old'
    failed_dir = site['root'] + '_failed_4.4.0_1'
    assert open(os.path.join(failed_dir, 'VERSION')).read().strip() == '4.4.0'
    assert not os.path.exists(site['root'] + '_staging')
    restore = fakes['backup'].calls[-1]
    assert restore['state'] == 'restored' and restore['backup'].endswith('pre.sqlite') and restore['verify'] is None
    assert [(c['state'], c['only']) for c in fakes['services'].calls] == [('stopped', None), ('started', ['ds', 'ts'])]
    assert result['restored'] == ('the old installation 4.3.0 was put back, the database was restored from %s, its '
                                  'services were started and verified' % restore['backup'])
    assert result['message'].startswith('step migrate_offline failed: boom in schema_update; the old installation')
    last = entries(site)[-1]
    assert (last['step'], last['result']) == ('finish', 'rolled_back') and last['message'] == result['message']
    assert result['attempt']['open'] is False


def test_rollback_after_a_failed_restart_keeps_the_database_its_skipped_migrations_did_not_touch(site, fakes):
    fakes['services'].failure = lambda params: params['state'] == 'restarted'
    run(every_step(site, migrate=None), FailJson)
    fakes['services'].failure = None
    result = run(rollback_args(site, failure='restart failed'))
    assert result['after_stop'] and not result['schema_touched']
    assert 'the database was left as it was (its schema was not touched)' in result['restored']
    assert not [c for c in fakes['backup'].calls if c['state'] == 'restored']


def test_rollback_before_the_stop_touches_nothing_and_says_so(site, fakes):
    fail_at(site, fakes, phase='pre')
    result = run(rollback_args(site, failure='boom'))
    assert result['result'] == 'failed' and not result['after_stop']
    assert result['restored'] == 'nothing was stopped, the old version kept running'
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.3.0'
    assert not fakes['services'].calls and not os.path.exists(site['root'] + '_staging')
    assert entries(site)[-1]['result'] == 'failed'


def test_rollback_journals_a_failure_the_engine_did_not_see(site, fakes):
    result = run(rollback_args(site, failed_step='stop', failure='the task timed out'))
    assert result['failure'] == 'step stop failed: the task timed out' and result['after_stop']
    assert [(e['step'], e['result']) for e in entries(site)][-2:] == [('stop', 'failed'), ('finish', 'rolled_back')]


def test_rollback_that_fails_closes_the_attempt_as_failed_and_says_so(site, fakes):
    fail_at(site, fakes)
    fakes['backup'].failure = lambda params: params['state'] == 'restored'
    result = run(rollback_args(site), FailJson)
    assert 'the rollback failed too: boom in db_backup' in result['msg'] and result['result'] == 'failed'
    assert (entries(site)[-1]['step'], entries(site)[-1]['result']) == ('finish', 'failed')


def test_rollback_refuses_while_another_run_holds_the_lock(site, fakes):
    fail_at(site, fakes)
    lock = os.path.join(os.path.dirname(site['journal']), 'upgrade.lock')
    with open(lock, 'w') as handle:
        json.dump(dict(run_id='other'), handle)
    before = open(site['journal']).read()
    result = run(rollback_args(site), FailJson)
    assert 'held by run other' in result['msg'] and open(site['journal']).read() == before
    assert open(os.path.join(site['root'], 'VERSION')).read().strip() == '4.4.0'


def test_rollback_in_check_mode_says_what_it_would_do(site, fakes):
    fail_at(site, fakes)
    before = open(site['journal']).read()
    result = run(dict(rollback_args(site), _ansible_check_mode=True))
    assert result['changed'] and result['after_stop'] and result['schema_touched']
    assert open(site['journal']).read() == before


def test_posix_host_writes_atomically_and_removes_links_not_their_targets(tmp_path):
    target = tmp_path / 'keep'
    target.mkdir()
    (target / 'file').write_text('x')
    link = tmp_path / 'link'
    link.symlink_to(target)
    host.PosixHost.remove_tree(str(link))
    assert not os.path.lexists(str(link)) and (target / 'file').read_text() == 'x'
    inner = tmp_path / 'tree'
    inner.mkdir()
    (inner / 'out').symlink_to(target)
    host.PosixHost.remove_tree(str(inner))
    assert not inner.exists() and (target / 'file').exists()
    path = str(tmp_path / 'script.sh')
    host.PosixHost.write_atomic(path, 'one\n', 0o755)
    host.PosixHost.write_atomic(path, 'two\n', 0o700)
    assert open(path).read() == 'two\n' and os.stat(path).st_mode & 0o777 == 0o700
    assert sorted(os.listdir(str(tmp_path))) == ['keep', 'script.sh']
    out = host.PosixHost.run([sys.executable, '-c', 'print("hi")'], timeout=30)
    assert out['rc'] == 0 and out['stdout'] == 'hi\n'
    with pytest.raises(host.StepFailed):
        host.PosixHost.run([sys.executable, '-c', 'import time; time.sleep(5)'], timeout=0.5)
    assert host.PosixHost.free_space(str(tmp_path)) > 0 and host.PosixHost.clock()['utc'].endswith('+00:00')


# -- a product's own flow (release_flow): background tasks, warning, lock, updater, relogin ------------------------------
RECORDER = '''import sys
with open(sys.argv[1], "a") as out:
    out.write(" ".join(sys.argv[2:]) + "\\n")
if sys.argv[2:4] == ["tasks", "list"]:
    print("sync idle\\nvalidation idle")
'''
UPDATER = '''import sys
with open(sys.argv[1], "a") as log:
    log.write("t INFO 1/1 applying 6.0.52/001.sql\\n")
    log.write("t ERROR table KS_X does not exist\\n" if sys.argv[2] == "fail" else "t INFO done\\n")
'''


def flow(site, updater='ok', **extra):
    tmp = site['tmp']
    (tmp / 'rec.py').write_text(RECORDER)
    (tmp / 'upd.py').write_text(UPDATER)
    admin = [sys.executable, str(tmp / 'rec.py'), str(tmp / 'calls.txt')]
    out = dict(tasks=dict(list=admin + ['tasks', 'list'], stop=admin + ['tasks', 'stop'], start=admin + ['tasks', 'start']),
               warning=dict(argv=admin + ['broadcast', '{message}'], minutes=2, points=[1], seconds_per_minute=0.05,
                            text='lock in {minutes} min'),
               lock=dict(lock=admin + ['db', 'lock'], unlock=admin + ['db', 'unlock']),
               updater=dict(argv=[sys.executable, str(tmp / 'upd.py'), str(tmp / 'update.log'), updater], log=str(tmp / 'update.log'),
                            stall_timeout=30, timeout=60),
               relogin_message='log in again to {version}', failed_message='update to {version} failed', major_only_offline=True)
    out.update(extra)
    return out


def calls(site):
    path = site['tmp'] / 'calls.txt'
    return path.read_text().splitlines() if path.exists() else []


def test_a_major_flow_stops_the_tasks_first_warns_locks_updates_unlocks_and_asks_to_log_in_again(site, fakes):
    result = run(every_step(site, steps=list(cutover.STEPS), flow=flow(site, kind='major')))
    assert [(s['step'], s['result']) for s in result['steps'] if s['step'] in release_flow.FLOW_STEPS] == [
        (s, 'ok') for s in release_flow.FLOW_STEPS]
    assert calls(site) == ['tasks list', 'tasks stop', 'tasks list', 'broadcast lock in 2 min', 'broadcast lock in 1 min',
                           'db lock', 'db unlock', 'broadcast log in again to 4.4.0', 'tasks start']
    data = result['attempt']['data']
    assert data['update_progress'] == ['t INFO 1/1 applying 6.0.52/001.sql', 't INFO done']
    assert [w['minutes'] for w in data['warned']] == [2, 1]
    ok = dict((e['step'], e) for e in entries(site) if e['result'] == 'ok')
    assert result['attempt']['downtime_s'] == round((journal.parse_iso(ok['unlock']['ended'])
                                                     - journal.parse_iso(ok['lock']['started'])).total_seconds(), 3)


def test_a_minor_flow_leaves_out_the_warning_the_lock_and_the_stop(site, fakes):
    result = run(every_step(site, steps=list(cutover.STEPS), flow=flow(site, kind='minor')))
    skipped = [s['step'] for s in result['steps'] if s['result'] == 'skipped']
    assert set(release_flow.MAJOR_ONLY) <= set(skipped)
    assert calls(site) == ['tasks list', 'tasks stop', 'tasks list', 'tasks start']
    assert [c['state'] for c in fakes['services'].calls] == ['restarted']      # restart_after_verify only
    assert result['attempt']['downtime_s'] == 0.0


def test_a_failing_updater_fails_the_step_and_the_rollback_unlocks_tells_the_users_and_starts_the_tasks(site, fakes):
    failed = run(every_step(site, steps=list(cutover.STEPS), flow=flow(site, updater='fail', kind='major')), expect=FailJson)
    assert failed['failed_step'] == 'update' and 'ERROR table KS_X does not exist' in failed['msg']
    assert 't INFO 1/1 applying 6.0.52/001.sql' in failed['msg']
    before = len(calls(site))
    result = run(args(site, op='rollback', staging_dir=site['root'] + '_staging', flow=flow(site, updater='fail', kind='major')))
    assert calls(site)[before:] == ['db unlock', 'broadcast update to 4.4.0 failed', 'tasks start']
    assert result['schema_touched'] is True and 'the database was restored from' in result['restored']
    assert result['restored'].endswith('the database was unlocked; the users were told; the background tasks were started again')


# -- ConAktiv's order: the release downloaded in stage, the backup before the stop, the users told and waited for -----
def test_stage_downloads_the_release_then_backs_up_online_and_tells_the_users_before_the_stop(site, fakes):
    import hashlib  # pylint: disable=import-outside-toplevel
    os.makedirs(str(site['tmp'] / 'pub'))
    release = make_tar(str(site['tmp'] / 'pub' / 'pmod-4.4.0.tar.gz'), 'pmod-4.4.0', {'VERSION': b'4.4.0\n'})
    with open(release, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    who = site['tmp'] / 'who'
    who.write_text('')
    staging = site['root'] + '_staging'   # holds the staged folder of the site fixture, and a leftover
    with open(os.path.join(staging, 'leftover.txt'), 'w') as handle:
        handle.write('from an interrupted run')
    result = run(args(site, steps=['stage', 'backup_online', 'users', 'stop', 'backup'], staged=None, staging_dir=staging,
                      top_dir='pmod-4.4.0', backup_when='online', artifact_url_password='Ftp-secret-9',
                      artifact_source=dict(url='file://' + release, checksum=digest),
                      users=dict(list_command=[sys.executable, '-c', 'print(open(%r).read(), end="")' % str(who)],
                                 max_wait=5)))
    assert [(s['step'], s['result']) for s in result['steps']] == [
        ('stage', 'ok'), ('backup_online', 'ok'), ('users', 'ok'), ('stop', 'ok'), ('backup', 'skipped')]
    assert os.path.isfile(os.path.join(staging, 'pmod-4.4.0.tar.gz'))
    assert not os.path.exists(os.path.join(staging, 'leftover.txt'))
    assert result['data']['staged'] == os.path.join(staging, 'pmod-4.4.0')
    assert result['data']['downloaded']['sha256'] == digest and result['data']['users_logged_on'] == []
    # the backup was taken once, before the services were stopped
    assert len(fakes['backup'].calls) == 1 and [c['state'] for c in fakes['services'].calls] == ['stopped']
    assert 'Ftp-secret-9' not in json.dumps(result) and 'Ftp-secret-9' not in open(site['journal']).read()


def test_a_wrong_download_fails_stage_naming_the_url_and_nothing_is_stopped(site, fakes):
    os.makedirs(str(site['tmp'] / 'pub'))
    release = make_tar(str(site['tmp'] / 'pub' / 'pmod-4.4.0.tar.gz'), 'pmod-4.4.0', {'VERSION': b'4.4.0\n'})
    failed = run(args(site, steps=['stage', 'stop'], staged=None, staging_dir=site['root'] + '_staging', top_dir='pmod-4.4.0',
                      artifact_source=dict(url='file://' + release, checksum='0' * 64)), expect=FailJson)
    assert failed['failed_step'] == 'stage'
    assert 'file://' + release in failed['msg'] and '0' * 64 in failed['msg']
    assert fakes['services'].calls == []


def test_users_and_artifact_source_input_is_checked_before_anything(site, fakes):
    failed = run(args(site, steps=['stage', 'users', 'stop'], staged=None, staging_dir=site['root'] + '_staging',
                      top_dir='x', artifact_source=dict(url='gopher://127.0.0.1/x.tgz', checksum='0' * 64),
                      users=dict(list_command=['who'], message_command=['tell'])), expect=FailJson)
    assert 'the scheme must be one of' in failed['msg'] and '{message}' in failed['msg']
    assert fakes['services'].calls == [] and fakes['backup'].calls == []
