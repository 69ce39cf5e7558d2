"""Unit tests for upgrade_host_state: what one pass reads on the host, compared with upgrade_journal's own read."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils import host_state
from ansible_collections.clinops.upgrade.plugins.modules import upgrade_host_state, upgrade_journal


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

    for module in (upgrade_host_state, upgrade_journal):
        monkeypatch.setattr(module.AnsibleModule, 'exit_json', exit_json)
        monkeypatch.setattr(module.AnsibleModule, 'fail_json', fail_json)


def run(module, args, expect=ExitJson):
    with patch_module_args(args):
        with pytest.raises(expect) as info:
            module.main()
    return info.value.args[0]


@pytest.fixture
def site(tmp_path):
    app = tmp_path / 'opt' / 'app'
    app.mkdir(parents=True)
    (app / 'version.txt').write_text('4.3.0\nbuild 17\n')
    releases = tmp_path / 'releases'
    releases.mkdir()
    artifact = releases / 'app-4.4.0.tar.gz'
    artifact.write_bytes(b'release bytes' * 1000)
    (releases / 'app-4.4.0.tar.gz.sha256').write_text(hashlib.sha256(artifact.read_bytes()).hexdigest().upper() + '  app-4.4.0.tar.gz\n')
    (releases / 'app-4.3.0.tar.gz').write_bytes(b'old')
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'app.db').write_bytes(b'x' * 4096)
    state = tmp_path / 'opt' / '.clinops-upgrade'
    return dict(root=tmp_path, app=str(app), artifact=str(artifact), releases=str(releases), db=str(data / 'app.db'),
                journal=str(state / 'journal.jsonl'))


def args(site, **extra):
    out = dict(version_file=site['app'] + '/version.txt', journal=site['journal'], target='4.4.0', run_id='run-1',
               artifact=site['artifact'], checksum_file=site['artifact'] + '.sha256',
               prior_installer=site['releases'] + '/app-{version}.tar.gz', database_file=site['db'],
               space_paths=[os.path.dirname(site['app']), str(site['root'] / 'not-yet' / 'backups')])
    out.update(extra)
    return out


def test_one_pass_reads_everything_preflight_needs(site):
    result = run(upgrade_host_state, args(site))
    assert result['changed'] is False
    assert result['installed_version'] == '4.3.0' and result['from_version'] == '4.3.0' and result['needed'] is True
    with open(site['artifact'], 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert result['artifact'] == dict(path=site['artifact'], exists=True, isdir=False, size=13000, checksum=digest)
    assert result['checksum_file']['readable'] and result['checksum_file']['expected'] == digest  # lower-cased
    assert result['prior_installer'] == dict(path=site['releases'] + '/app-4.3.0.tar.gz', exists=True, isdir=False, size=3,
                                             checksum=None)
    assert result['database_file']['exists'] and result['database_file']['size'] == 4096
    # a folder not there yet is measured on its nearest existing parent, as statvfs reads it
    info = os.statvfs(str(site['root']))
    assert [s['bytes_free'] > 0 for s in result['free_space']] == [True, True]
    assert abs(result['free_space'][1]['bytes_free'] - info.f_bavail * info.f_frsize) < 64 * 1048576
    assert result['free_mb_min'] == min(s['mb_free'] for s in result['free_space'])
    assert not os.path.exists(os.path.dirname(site['journal']))  # reading created nothing


def test_the_journal_and_lock_read_as_upgrade_journal_reads_them(site):
    os.makedirs(os.path.dirname(site['journal']))
    entries = [dict(step='begin', result='ok', attempt=1, target='4.4.0', run_id='old', data=dict(from_version='4.2.0')),
               dict(step='stage', result='ok', attempt=1, target='4.4.0', run_id='old')]
    with open(site['journal'], 'w', encoding='utf-8') as handle:
        handle.write('\n'.join(json.dumps(e) for e in entries) + '\n{"step": "sto')  # a line cut by a crash
    with open(os.path.join(os.path.dirname(site['journal']), 'upgrade.lock'), 'w', encoding='utf-8') as handle:
        json.dump(dict(run_id='old', host='elsewhere', heartbeat_epoch=0), handle)
    mine = run(upgrade_host_state, args(site))
    theirs = run(upgrade_journal, dict(path=site['journal'], target='4.4.0', run_id='run-1'))
    assert mine['journal']['entries'] == theirs['entries']
    assert mine['journal']['attempt'] == theirs['attempt']
    assert mine['journal']['lock']['available'] is True and theirs['lock']['available'] is True  # stale: taken over
    assert mine['journal']['lock']['holder'] == theirs['lock']['holder']
    # an open attempt: the upgrade resumes from the version it started from, whatever the version file says now
    assert mine['journal']['attempt']['open'] and mine['journal']['attempt']['done'] == ['stage']
    assert mine['from_version'] == '4.2.0' and mine['needed'] is True
    assert mine['prior_installer']['path'].endswith('app-4.2.0.tar.gz') and not mine['prior_installer']['exists']


def test_a_current_host_costs_no_hashing(site):
    with open(site['app'] + '/version.txt', 'w', encoding='utf-8') as handle:
        handle.write('4.4.0\n')
    result = run(upgrade_host_state, args(site))
    assert result['needed'] is False and result['installed_version'] == '4.4.0'
    assert 'artifact' not in result and 'free_space' not in result
    forced = run(upgrade_host_state, args(site, always=True))
    assert forced['artifact']['checksum'] and forced['free_space']


def test_missing_files_are_answers_not_failures(site):
    os.remove(site['artifact'])
    os.remove(site['artifact'] + '.sha256')
    os.remove(site['db'])
    os.remove(site['app'] + '/version.txt')
    result = run(upgrade_host_state, args(site, target='4.4.0'))
    assert result['installed_version'] == '' and result['version_file']['exists'] is False
    assert result['needed'] is False  # no installation: preflight says so; nothing more to read
    result = run(upgrade_host_state, args(site, always=True))
    assert result['artifact']['exists'] is False and result['artifact']['checksum'] is None
    assert result['checksum_file']['readable'] is False and 'not found' in result['checksum_file']['msg']
    assert result['database_file']['exists'] is False


@pytest.mark.parametrize('bad, message', [
    (dict(target=' '), 'target must not be empty'),
    (dict(stale_after=-1), 'stale_after must not be negative'),
])
def test_bad_input_is_refused_before_anything_is_read(site, bad, message):
    result = run(upgrade_host_state, args(site, **bad), expect=FailJson)
    assert result['failed'] and message in result['msg'] and 'nothing was read' in result['msg']


def test_a_journal_that_is_a_folder_is_refused(site):
    os.makedirs(site['journal'])
    result = run(upgrade_host_state, args(site), expect=FailJson)
    assert 'is not a regular file' in result['msg']


def test_unparsable_versions_read_everything(site):
    with open(site['app'] + '/version.txt', 'w', encoding='utf-8') as handle:
        handle.write('nightly\n')
    result = run(upgrade_host_state, args(site))
    assert result['needed'] is True and result['artifact']['exists']


def test_the_reader_interface_is_all_read_state_uses(site):
    """A reader with only the documented operations (as the Windows action plugin gives) is enough."""
    calls = []

    class Reader:
        def __getattr__(self, name):
            calls.append(name)
            return getattr(host_state.PosixReader, name)

    result = host_state.read_state(dict(args(site), stale_after=3600, always=False), Reader())
    assert result['needed'] is True
    assert set(calls) <= {'read_text', 'stat', 'free_space', 'lock', 'parent'}
