"""Unit tests for db_backup's paths (issue #11): path options with "..", labels and names that could name a folder,
symlinks in the files engine's folder (archived as links, never followed), and a restore that never writes outside
its target, whatever the archive's members say. Real folders, real GNU tar and gzip, real tar archives."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils.backup import common as backup_common
from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as backup_module


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patched_exits(monkeypatch):
    def exit_json(self, **kwargs):
        kwargs.setdefault('changed', False)
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(AnsibleModule, 'fail_json', fail_json)


def run_module(args, check=False):
    args = dict(args)
    if check:
        args['_ansible_check_mode'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as info:
            backup_module.run(AnsibleModule(**backup_module.module_kwargs()))
    return info.value.args[0]


def snapshot(root):
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


@pytest.fixture
def site(tmp_path):
    data = tmp_path / 'data'
    (data / 'sub').mkdir(parents=True)
    (data / 'a.dat').write_bytes(b'a' * 100)
    (data / 'sub/b.dat').write_bytes(b'b' * 50)
    outside = tmp_path / 'outside'
    (outside / 'dir').mkdir(parents=True)
    (outside / 'secret').write_bytes(b'not for the backup\n')
    (outside / 'dir/more').write_bytes(b'nor this\n')
    return dict(data=str(data), dest=str(tmp_path / 'backups'), outside=outside, tmp=tmp_path)


@pytest.mark.parametrize('option,value', [
    ('dest', '{tmp}/x/../backups'), ('path', '{tmp}/data/../data'), ('bin_dir', '/usr/../usr/bin'),
    ('label', 'pre/../../etc'), ('label', '..'), ('label', 'a\\b'), ('name', '{engine}/{timestamp}'), ('name', '..{timestamp}'),
])
def test_path_and_name_options_refused_before_anything(site, option, value):
    args = dict(engine='files', path=site['data'], dest=site['dest'], compression='none')
    args[option] = value.replace('{tmp}', str(site['tmp'])) if option not in ('name',) else value
    before = snapshot(site['tmp'])
    for check in (True, False):
        result = run_module(args, check=check)
        assert result.get('failed') and option in result['msg'], result
        assert snapshot(site['tmp']) == before


@pytest.mark.parametrize('option', ['backup', 'target_database'])
def test_restore_path_options_with_dotdot_refused(site, option):
    made = run_module(dict(engine='files', path=site['data'], dest=site['dest'], compression='none'))
    assert not made.get('failed'), made
    args = dict(engine='files', path=site['data'], dest=site['dest'], state='restored', backup=made['backup_path'])
    args[option] = os.path.join(site['tmp'], 'x', '..', os.path.relpath(args.get(option) or site['data'], site['tmp']))
    before = snapshot(site['tmp'])
    result = run_module(args)
    assert result.get('failed') and option in result['msg'] and '..' in result['msg']
    assert snapshot(site['tmp']) == before


def test_symlinks_in_the_folder_are_archived_as_links_and_restored_as_links(site):
    data = site['data']
    os.symlink(str(site['outside'] / 'secret'), os.path.join(data, 'to-secret'))
    os.symlink(str(site['outside'] / 'dir'), os.path.join(data, 'to-dir'))
    os.symlink('sub/b.dat', os.path.join(data, 'inside'))
    outside_before = snapshot(site['outside'])
    made = run_module(dict(engine='files', path=data, dest=site['dest'], compression='gzip', verify='restore'))
    assert not made.get('failed'), made.get('msg')
    with tarfile.open(made['backup_path']) as tar:
        members = dict((m.name, m) for m in tar.getmembers())
        contents = b''.join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert members['data/to-secret'].issym() and members['data/to-secret'].linkname == str(site['outside'] / 'secret')
    assert members['data/to-dir'].issym() and 'data/to-dir/more' not in members
    assert b'not for the backup' not in contents and b'nor this' not in contents
    # restore over a changed folder: the links come back as links, nothing outside is written
    os.unlink(os.path.join(data, 'inside'))
    os.unlink(os.path.join(data, 'a.dat'))
    restored = run_module(dict(engine='files', path=data, dest=site['dest'], state='restored'))
    assert not restored.get('failed'), restored.get('msg')
    assert os.readlink(os.path.join(data, 'inside')) == 'sub/b.dat'
    assert os.path.islink(os.path.join(data, 'to-dir')) and os.path.islink(os.path.join(data, 'to-secret'))
    assert open(os.path.join(data, 'a.dat'), 'rb').read() == b'a' * 100
    assert snapshot(site['outside']) == outside_before


def test_a_symlinked_source_folder_is_refused(site):
    link = str(site['tmp'] / 'data-link')
    os.symlink(site['data'], link)
    for check in (True, False):
        result = run_module(dict(engine='files', path=link, dest=site['dest'], compression='none'), check=check)
        assert result.get('failed') and 'is a symlink' in result['msg']
    assert not os.path.exists(site['dest']) or os.listdir(site['dest']) == []


def evil_archive(site, compression):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w') as tar:
        def add(name, kind='file', data=b'', linkname=''):
            info = tarfile.TarInfo(name)
            if kind == 'dir':
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == 'symlink':
                info.type, info.linkname = tarfile.SYMTYPE, linkname
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        add('data', 'dir')
        add('data/a.dat', data=b'evil')
        add('data/escape', 'symlink', linkname=str(site['outside']))
        add('data/escape/secret', data=b'overwritten through the link')
        add('data/../../outside/planted', data=b'planted')
    raw = out.getvalue()
    return gzip.compress(raw) if compression == 'gzip' else raw


@pytest.mark.parametrize('compression', ['none', 'gzip'])
def test_restore_never_writes_outside_its_target(site, compression):
    made = run_module(dict(engine='files', path=site['data'], dest=site['dest'], compression=compression))
    assert not made.get('failed'), made.get('msg')
    path = made['backup_path']
    # the archive is swapped for a hostile one, and its manifest made to match (the checksum cannot tell)
    payload = evil_archive(site, compression)
    with open(path, 'wb') as handle:
        handle.write(payload)
    manifest_file = backup_common.manifest_path(path)
    with open(manifest_file) as handle:
        manifest = json.load(handle)
    manifest.update(size=len(payload), sha256=hashlib.sha256(payload).hexdigest(), entries=5)
    with open(manifest_file, 'w') as handle:
        json.dump(manifest, handle)
    data_before, outside_before = snapshot(site['data']), snapshot(site['outside'])
    result = run_module(dict(engine='files', path=site['data'], dest=site['dest'], state='restored', backup=path))
    assert result.get('failed') and 'would leave' in result['msg'], result.get('msg')
    assert 'data/escape' in result['msg'] and 'data/../../outside/planted' in result['msg']
    assert snapshot(site['outside']) == outside_before
    assert snapshot(site['data']) == data_before
    assert sorted(os.listdir(str(site['tmp']))) == ['backups', 'data', 'outside']  # no scratch folder left either
