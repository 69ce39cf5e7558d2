"""Unit tests for upgrade_cutover's paths (issue #11): the staging unpack, the swap and the cleanup never leave their
folders, whichever component is a symlink; every path option refuses "..". Real archives, real folders, real links."""
from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils import cutover
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


def snapshot(root):
    """Every path below root: its kind, its link text or its bytes."""
    out = {}
    for folder, dirs, files in os.walk(str(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                out[os.path.relpath(path, str(root))] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                out[os.path.relpath(path, str(root))] = ('dir', None)
            else:
                with open(path, 'rb') as handle:
                    out[os.path.relpath(path, str(root))] = ('file', handle.read())
    return out


def tar_of(path, entries):
    """entries: (name, kind, data-or-linkname), in order."""
    with tarfile.open(path, 'w') as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == 'file':
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
                continue
            info.type = {'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE, 'hardlink': tarfile.LNKTYPE}[kind]
            if kind == 'dir':
                info.mode = 0o755
            else:
                info.linkname = value
            tar.addfile(info)
    return path


@pytest.fixture
def site(tmp_path):
    opt = tmp_path / 'opt'
    root = opt / 'PMOD'
    root.mkdir(parents=True)
    (root / 'VERSION').write_text('4.3.0\n')
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep.txt').write_bytes(b'keep\n')
    state = tmp_path / 'state'
    state.mkdir()
    path = str(state / 'journal.jsonl')
    journal.Journal(path, '4.4.0', 'run1').record('begin', 'ok', data=dict(from_version='4.3.0'))
    return dict(root=str(root), opt=opt, journal=path, tmp=tmp_path, outside=outside)


class Module:
    check_mode = False

    def __init__(self, params):
        self.params = params
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def make_cutover(site, **extra):
    params = dict(journal=site['journal'], target='4.4.0', run_id='run1', install_root=site['root'], version_file='VERSION',
                  old_suffix='_old', keep_old=1, staging_dir=site['root'] + '_staging', staged=None, artifact=None,
                  top_dir='pmod-4.4.0', old_artifact=None, old_top_dir=None, defaults_dir=None, verify_wait=2, checks=[],
                  restart_after_verify=[])
    params.update(extra)
    module = Module(params)
    return cutover.Cutover(module), module


# -- the staging unpack ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('entries,why', [
    ([('top', 'dir', ''), ('top/a', 'symlink', '{outside}'), ('top/a/x', 'file', b'through')], 'absolute symlink'),
    ([('top', 'dir', ''), ('top/b', 'symlink', '.'), ('top/c', 'symlink', 'b/../..'), ('top/c/x', 'file', b'through')],
     'symlink leads outside'),
    ([('top', 'dir', ''), ('top/l', 'symlink', 'VERSION'), ('top/VERSION', 'file', b'4.4.0\n'), ('top/h', 'hardlink', 'top/l')],
     'hard link to a symlink'),
    ([('top', 'dir', ''), ('top/h', 'hardlink', '../../outside/keep.txt')], 'hard link to a path outside'),
    ([('top/../../x', 'file', b'x')], '".." in the name'),
])
def test_stage_refuses_members_that_leave_before_writing_any(site, entries, why):
    entries = [(n, k, v.replace('{outside}', str(site['outside'])) if isinstance(v, str) else v) for n, k, v in entries]
    archive = tar_of(str(site['tmp'] / 'rel.tar'), [('top/first', 'file', b'1')] + entries)
    staging = site['root'] + '_staging'
    before = snapshot(site['tmp'])
    with pytest.raises(cutover.StepFailed) as info:
        cutover.extract(archive, staging)
    assert why in info.value.msg and 'nothing was unpacked' in info.value.msg
    after = snapshot(site['tmp'])
    assert after == before  # not even the harmless first member was written
    assert snapshot(site['outside']) == {'keep.txt': ('file', b'keep\n')}


def test_zip_members_with_dotdot_or_absolute_names_refused(site):
    archive = str(site['tmp'] / 'rel.zip')
    for name in ('top/../../evil', '/abs/evil'):
        with zipfile.ZipFile(archive, 'w') as zipped:
            zipped.writestr('top/VERSION', '4.4.0\n')
            zipped.writestr(zipfile.ZipInfo(name), 'evil')
        staging = site['root'] + '_staging'
        with pytest.raises(cutover.StepFailed) as info:
            cutover.extract(archive, staging)
        assert name in info.value.msg
        assert not os.path.exists(staging)
        assert not os.path.exists(str(site['tmp'] / 'evil')) and not os.path.exists('/abs/evil')


def test_an_archive_with_inside_links_unpacks_them_as_links(site):
    archive = tar_of(str(site['tmp'] / 'rel.tar'), [
        ('top', 'dir', ''), ('top/bin', 'dir', ''), ('top/bin/run', 'file', b'#!/bin/sh\n'),
        ('top/current', 'symlink', 'bin'), ('top/current/other', 'file', b'o'), ('top/hard', 'hardlink', 'top/bin/run')])
    staging = site['root'] + '_staging'
    assert cutover.extract(archive, staging) == 6
    assert os.readlink(os.path.join(staging, 'top/current')) == 'bin'
    assert open(os.path.join(staging, 'top/bin/other'), 'rb').read() == b'o'
    assert os.stat(os.path.join(staging, 'top/hard')).st_ino == os.stat(os.path.join(staging, 'top/bin/run')).st_ino


@pytest.mark.parametrize('where', ['staging', 'parent'])
def test_stage_refuses_a_symlinked_staging_folder_or_parent(site, where):
    target = site['outside'] / 'stage'
    target.mkdir()
    (target / 'precious').write_bytes(b'p')
    archive = tar_of(str(site['tmp'] / 'rel.tar'), [('pmod-4.4.0', 'dir', ''), ('pmod-4.4.0/VERSION', 'file', b'4.4.0\n')])
    if where == 'staging':
        staging = site['root'] + '_staging'
        os.symlink(str(target), staging)
    else:
        os.symlink(str(site['outside']), str(site['tmp'] / 'linked'))
        staging = str(site['tmp'] / 'linked' / 'stage')
    step, _module = make_cutover(site, staging_dir=staging, artifact=archive)
    before = snapshot(site['outside'])
    with pytest.raises(cutover.StepFailed) as info:
        step.do_stage()
    assert 'symlink' in info.value.msg and 'nothing was unpacked' in info.value.msg
    assert snapshot(site['outside']) == before


# -- the swap and the cleanup ----------------------------------------------------------------------------------------

def staged_release(site):
    staged = os.path.join(site['root'] + '_staging', 'pmod-4.4.0')
    os.makedirs(staged)
    with open(os.path.join(staged, 'VERSION'), 'w') as handle:
        handle.write('4.4.0\n')
    return staged


@pytest.mark.parametrize('which', ['install_root', 'staged', 'old_dir'])
def test_swap_refuses_a_symlink_that_leads_elsewhere(site, which):
    staged = staged_release(site)
    old_dir = site['root'] + '_old0001'
    real = site['outside'] / 'real'
    real.mkdir()
    (real / 'VERSION').write_text('4.3.0\n')
    if which == 'install_root':
        os.rename(site['root'], site['root'] + '.moved')
        os.symlink(str(real), site['root'])
    elif which == 'staged':
        os.rename(staged, staged + '.moved')
        os.symlink(str(real), staged)
    else:
        os.symlink(str(real), old_dir)
    step, _module = make_cutover(site, staged=staged)
    step.data['old_dir'] = old_dir
    before = snapshot(site['tmp'])
    with pytest.raises(cutover.StepFailed) as info:
        step.do_swap()
    assert 'is a symlink' in info.value.msg and 'nothing was moved' in info.value.msg
    assert snapshot(site['tmp']) == before


def test_swap_refuses_a_staged_folder_outside_staging_dir(site):
    staging = site['root'] + '_staging'
    os.makedirs(staging)
    os.symlink(str(site['outside']), os.path.join(staging, 'via'))
    (site['outside'] / 'pmod-4.4.0').mkdir()
    step, _module = make_cutover(site, staged=os.path.join(staging, 'via', 'pmod-4.4.0'))
    step.data['old_dir'] = site['root'] + '_old0001'
    before = snapshot(site['tmp'])
    with pytest.raises(cutover.StepFailed) as info:
        step.do_swap()
    assert 'leads outside staging_dir' in info.value.msg
    assert snapshot(site['tmp']) == before


def test_cleanup_never_removes_through_a_link(site):
    opt = site['opt']
    for name in ('PMOD_old0001', 'PMOD_old0002'):
        (opt / name).mkdir()
        (opt / name / 'VERSION').write_text('old\n')
    victim = site['outside'] / 'victim'
    victim.mkdir()
    (victim / 'data').write_bytes(b'must stay')
    os.symlink(str(victim), str(opt / 'PMOD_old0000'))  # the oldest by name: cleanup would pick it first
    staging = site['root'] + '_staging'
    os.symlink(str(site['outside']), staging)
    step, module = make_cutover(site, keep_old=1)
    result = step.do_cleanup()
    assert result['removed_old'] == [str(opt / 'PMOD_old0001')]
    assert not os.path.exists(str(opt / 'PMOD_old0001')) and os.path.isdir(str(opt / 'PMOD_old0002'))
    assert os.path.islink(str(opt / 'PMOD_old0000')) and os.path.islink(staging)
    assert snapshot(site['outside'])['victim/data'] == ('file', b'must stay')
    assert snapshot(site['outside'])['keep.txt'] == ('file', b'keep\n')
    assert len(module.warnings) == 2 and all('left alone' in w for w in module.warnings)


# -- the path options ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('option,value', [
    ('install_root', '/opt/x/../PMOD'), ('staged', '/opt/PMOD_staging/../../etc'), ('artifact', '/srv/../rel.tar'),
    ('staging_dir', '/opt/PMOD_staging/..'), ('old_artifact', '/srv/a/../old.tar'), ('journal', '/var/lib/../j.jsonl'),
    ('top_dir', '../pmod-4.4.0'), ('old_top_dir', '/pmod-4.3.0'), ('defaults_dir', 'properties/../../..'),
])
def test_dotdot_in_every_path_option_refused_before_anything(site, option, value):
    arguments = dict(journal=site['journal'], run_id='run1', target='4.4.0', install_root=site['root'], services=[],
                     steps=['stage', 'swap', 'cleanup'], artifact=str(site['tmp'] / 'rel.tar'),
                     staging_dir=site['root'] + '_staging', top_dir='pmod-4.4.0', old_artifact=str(site['tmp'] / 'old.tar'),
                     old_top_dir='pmod-4.3.0', defaults_dir='properties')
    arguments[option] = value
    before = snapshot(site['tmp'])
    for check in (True, False):
        with patch_module_args(dict(arguments, _ansible_check_mode=check)):
            with pytest.raises(FailJson) as info:
                upgrade_cutover.main()
        msg = info.value.args[0]['msg']
        assert option in msg and ('..' in msg or 'absolute' in msg)
        assert snapshot(site['tmp']) == before
