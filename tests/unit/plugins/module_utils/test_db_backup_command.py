"""db_backup's engine ``command``: option checks and how it finds what the vendor's program wrote.

The whole runs (a stand-in backup program, real files and checksums) are in tests/integration/test_db_backup.py.
"""
from __future__ import annotations

import os
import time

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.backup import command as backup_command
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError


def params(**command):
    base = dict(argv=['/opt/ca/bin/ca-admin', 'backup'], output='/srv/ca/Backup/*.cab', chdir=None, timeout=60, environment={},
                password_env=None, verify_argv=None, restore_argv=None)
    base.update(command)
    return dict(engine='command', command=base, login_password=None, target_database=None)


def test_good_options_pass():
    backup_command.check_command_options(params())
    backup_command.check_command_options(dict(params(password_env='CA_PASSWORD'), login_password='x'))


@pytest.mark.parametrize('change, words', [
    (dict(argv=[]), 'needs command.argv'),
    (dict(argv=['']), 'needs command.argv'),
    (dict(output=None), 'needs command.output'),
    (dict(output='Backup/*.cab'), 'must be an absolute path'),
    (dict(output='/*.cab'), 'has no folder without wildcards'),
    (dict(output='/srv/../etc/*.cab'), 'contains a ".." component'),
    (dict(timeout=0), 'command.timeout must be 1 second or more'),
    (dict(verify_argv=[]), 'command.verify_argv is empty'),
    (dict(environment={'A=B': 'x'}), 'cannot be set'),
    (dict(password_env='CA_PASSWORD'), 'password_env needs login_password'),
    (dict(password_env='A=B'), 'is not a variable name'),
])
def test_bad_options_are_refused(change, words):
    with pytest.raises(BackupError, match=words):
        backup_command.check_command_options(params(**change))


def test_command_belongs_to_engine_command_and_target_database_is_refused():
    with pytest.raises(BackupError, match='command applies to engine command only'):
        backup_command.check_command_options(dict(params(), engine='files'))
    backup_command.check_command_options(dict(engine='files', command=None))
    with pytest.raises(BackupError, match='target_database does not apply to engine command'):
        backup_command.check_command_options(dict(params(), target_database='/x'))


@pytest.mark.parametrize('output, root', [
    ('/srv/ca/Backup/*.cab', '/srv/ca/Backup'),
    ('/srv/ca/Backup/', '/srv/ca'),
    ('/srv/ca/Backup/full.cab', '/srv/ca/Backup'),
    ('/srv/ca/*/Backup/x.cab', '/srv/ca'),
    ('/srv/ca/Backup/**/*.cab', '/srv/ca/Backup'),
])
def test_split_output(output, root):
    assert backup_command.split_output(output)[0] == root


def test_snapshot_tells_new_and_rewritten_files_from_old_ones(tmp_path):
    old = tmp_path / 'a.cab'
    old.write_bytes(b'old')
    before = backup_command.snapshot(str(tmp_path / '*.cab'))
    (tmp_path / 'b.cab').write_bytes(b'new')
    (tmp_path / 'ignored.txt').write_bytes(b'x')
    after = backup_command.snapshot(str(tmp_path / '*.cab'))
    assert sorted(p for p, s in after.items() if before.get(p) != s) == [str(tmp_path / 'b.cab')]
    time.sleep(0.01)
    old.write_bytes(b'rewritten in place')
    again = backup_command.snapshot(str(tmp_path / '*.cab'))
    assert sorted(p for p, s in again.items() if after.get(p) != s) == [str(old)]
    folder = tmp_path / 'dir.cab'
    folder.mkdir()
    (folder / 'part1').write_bytes(b'12345')
    assert backup_command.snapshot(str(folder))[str(folder)][0] == 5
    assert os.path.isdir(str(folder))


def test_placeholder_and_substitute():
    assert backup_command.substitute(['verify', '--file={backup}', '{backup}'], '/x/y.cab') == ['verify', '--file=/x/y.cab', '/x/y.cab']
    assert backup_command.CommandEngine.placeholder('/s', {'members': ['a.cab']}) == '/s/a.cab'
    assert backup_command.CommandEngine.placeholder('/s', {'members': ['a.cab', 'b.cab']}) == '/s'
