# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
from unittest import mock

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils import paths


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / 'root'
    (root / 'conf/sub').mkdir(parents=True)
    (root / 'conf/a.properties').write_bytes(b'a=1\n')
    (tmp_path / 'outside').mkdir()
    (tmp_path / 'outside/secret').write_bytes(b'secret\n')
    return root, tmp_path / 'outside'


def test_plain_path_resolves_under_root(tree):
    root, _outside = tree
    assert paths.resolve_under(str(root), 'conf/a.properties') == os.path.join(os.path.realpath(str(root)), 'conf/a.properties')
    assert paths.resolve_under(str(root), 'conf/not/yet/there') == os.path.join(os.path.realpath(str(root)), 'conf/not/yet/there')


@pytest.mark.parametrize('rel', ['/etc/passwd', 'conf/../../x', '..', 'C:/Windows', 'a\x00b'])
def test_absolute_dotdot_and_nul_refused(tree, rel):
    root, _outside = tree
    with pytest.raises(paths.PathEscape):
        paths.resolve_under(str(root), rel)


def test_symlinked_folder_leading_out_is_named(tree):
    root, outside = tree
    os.symlink(str(outside), str(root / 'escape'))
    with pytest.raises(paths.PathEscape) as info:
        paths.resolve_under(str(root), 'escape/secret', 'src')
    assert 'src escape/secret: escape is a symlink to %s' % outside in str(info.value)
    # a folder on the way that does not exist yet below the link is refused the same
    with pytest.raises(paths.PathEscape):
        paths.resolve_under(str(root), 'escape/new/file')


def test_relative_link_climbing_out_and_chains_refused(tree):
    root, _outside = tree
    os.symlink('../../outside', str(root / 'conf/up'))
    os.symlink('up', str(root / 'conf/chain'))  # inside by its text, out through the next link
    os.symlink('../outside/secret', str(root / 'file'))
    for rel in ('conf/up/secret', 'conf/chain', 'conf/chain/secret', 'file'):
        with pytest.raises(paths.PathEscape) as info:
            paths.resolve_under(str(root), rel)
        assert 'outside' in str(info.value)


def test_dangling_link_out_refused_and_last_link_not_followed(tree):
    root, _outside = tree
    os.symlink('/nonexistent/place', str(root / 'dangling'))
    with pytest.raises(paths.PathEscape):
        paths.resolve_under(str(root), 'dangling')
    os.symlink('a.properties', str(root / 'conf/alias'))
    real = os.path.realpath(str(root))
    assert paths.resolve_under(str(root), 'conf/alias') == os.path.join(real, 'conf/a.properties')
    assert paths.resolve_under(str(root), 'conf/alias', follow_last=False) == os.path.join(real, 'conf/alias')


def test_inside_folder_link_is_followed(tree):
    root, _outside = tree
    os.symlink('conf', str(root / 'settings'))
    real = os.path.realpath(str(root))
    assert paths.resolve_under(str(root), 'settings/a.properties') == os.path.join(real, 'conf/a.properties')


def test_file_used_as_folder_refused(tree):
    root, _outside = tree
    with pytest.raises(paths.PathEscape) as info:
        paths.resolve_under(str(root), 'conf/a.properties/x')
    assert 'not a directory' in str(info.value)


def test_read_under_reads_inside_and_refuses_out(tree):
    root, outside = tree
    assert paths.read_under(str(root), 'conf/a.properties') == b'a=1\n'
    os.symlink(str(outside / 'secret'), str(root / 'conf/s'))
    with pytest.raises(paths.PathEscape):
        paths.read_under(str(root), 'conf/s')


def test_open_under_refuses_a_component_swapped_after_the_check(tree):
    """The race: the check passed, then conf became a symlink leading out; O_NOFOLLOW makes the open fail."""
    root, outside = tree
    checked = paths.resolve_under(str(root), 'conf/a.properties')
    os.rename(str(root / 'conf'), str(root / 'conf.moved'))
    (outside / 'a.properties').write_bytes(b'from outside\n')
    os.symlink(str(outside), str(root / 'conf'))
    with mock.patch.object(paths, 'resolve_under', return_value=checked):
        with pytest.raises(paths.PathEscape) as info:
            paths.open_under(str(root), 'conf/a.properties')
    assert 'became a symlink' in str(info.value)
    # and the last component swapped for a link
    os.unlink(str(root / 'conf'))
    os.rename(str(root / 'conf.moved'), str(root / 'conf'))
    os.unlink(str(root / 'conf/a.properties'))
    os.symlink(str(outside / 'secret'), str(root / 'conf/a.properties'))
    with mock.patch.object(paths, 'resolve_under', return_value=checked):
        with pytest.raises(paths.PathEscape):
            paths.open_under(str(root), 'conf/a.properties')


@pytest.mark.parametrize('value', ['/srv/pmod/../etc', '../x', 'C:\\PMOD\\..\\Windows', '/srv/a\x00'])
def test_check_option_path_refuses_dotdot(value):
    with pytest.raises(paths.PathEscape) as info:
        paths.check_option_path(value, 'dest')
    assert 'dest' in str(info.value)


@pytest.mark.parametrize('value', ['/srv/pmod', '/srv/pmod..old/x', 'relative/ok', None])
def test_check_option_path_keeps_plain_paths(value):
    assert paths.check_option_path(value, 'dest') == value


@pytest.mark.parametrize('link_rel,target,inside', [
    ('a/b', 'c', True), ('a/b', '../c', True), ('a/b', '../../c', False), ('a', '/etc', False), ('a/b', 'x/../../y', True),
    ('a/b', '', False),
])
def test_link_target_inside(link_rel, target, inside):
    assert paths.link_target_inside(link_rel, target) is inside


@pytest.mark.parametrize('members,expect', [
    ([('a', 'symlink', '/tmp'), ('a/x', 'file', '')], ['a -> /tmp']),
    ([('b', 'symlink', '.'), ('c', 'symlink', 'b/..'), ('c/x', 'file', '')], ['c -> b/..']),
    ([('d', 'dir', ''), ('d/l', 'symlink', '../f'), ('f', 'file', ''), ('g', 'hardlink', 'd/l')], ['g => d/l']),
    ([('h', 'hardlink', '../x')], ['h => ../x']),
    ([('../x', 'file', '')], ['../x']),
    ([('/etc/x', 'file', '')], ['/etc/x']),
    ([('dev', 'other', '')], ['dev']),
    ([('l', 'symlink', 'm'), ('m', 'symlink', 'l'), ('l/x', 'file', '')], ['m -> l']),
])
def test_archive_escapes(members, expect):
    bad = paths.archive_escapes(members)
    assert len(bad) == len(expect)
    for found, name in zip(bad, expect):
        assert found.startswith(name)


def test_archive_that_stays_inside_passes():
    members = [('./rel', 'dir', ''), ('rel/bin', 'dir', ''), ('rel/bin/run', 'file', ''), ('rel/current', 'symlink', 'bin'),
               ('rel/current/x', 'file', ''), ('rel/lib', 'symlink', './bin/../bin'), ('rel/hard', 'hardlink', 'rel/bin/run')]
    assert paths.archive_escapes(members) == []


def test_archive_of_a_backup_keeps_links_out_but_refuses_writes_through_them():
    members = [('data', 'dir', ''), ('data/logs', 'symlink', '/var/log/app'), ('data/up', 'symlink', '../../x'),
               ('data/ok', 'file', '')]
    assert paths.archive_escapes(members, links_may_leave=True) == []
    assert len(paths.archive_escapes(members)) == 2
    through = members + [('data/logs/x', 'file', ''), ('data/up/y', 'file', '')]
    bad = paths.archive_escapes(through, links_may_leave=True)
    assert [b.split(':')[0] for b in bad] == ['data/logs/x', 'data/up/y']
