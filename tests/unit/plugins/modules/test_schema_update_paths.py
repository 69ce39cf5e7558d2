# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_update's migrations folder (issue #11): "..", and migration files that are symlinks leading out of it,
are refused before the database is touched; a real SQLite database shows nothing ran."""

from __future__ import annotations

import os
import sqlite3

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils.schema import module as schema_module


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def patched(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        kwargs['failed'] = True
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)


def run_module(args, check=False):
    args = dict(args, _ansible_check_mode=check)
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as caught:
            schema_module.run(basic.AnsibleModule(**schema_module.module_kwargs()))
    return caught.value.args[0]


@pytest.fixture
def site(tmp_path):
    folder = tmp_path / 'sql'
    folder.mkdir()
    (folder / 'V1__create.sql').write_text('CREATE TABLE t (a INTEGER);\n')
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'V2__evil.sql').write_text('DROP TABLE t;\n')
    db = str(tmp_path / 'db.sqlite')
    sqlite3.connect(db).close()
    return dict(folder=str(folder), outside=outside, db=db, tmp=tmp_path)


def tables(db):
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def test_a_migration_symlinked_out_of_the_folder_is_refused_and_nothing_runs(site):
    os.symlink(str(site['outside'] / 'V2__evil.sql'), os.path.join(site['folder'], 'V2__evil.sql'))
    for check in (True, False):
        result = run_module(dict(engine='sqlite', path=site['db'], migrations=site['folder']), check=check)
        assert result.get('failed') and 'V2__evil.sql' in result['msg'] and 'outside' in result['msg']
        assert tables(site['db']) == []


def test_a_migration_linked_inside_the_folder_is_read(site):
    os.makedirs(os.path.join(site['folder'], 'files'))
    os.rename(os.path.join(site['folder'], 'V1__create.sql'), os.path.join(site['folder'], 'files', 'create.sql'))
    os.symlink('files/create.sql', os.path.join(site['folder'], 'V1__create.sql'))
    result = run_module(dict(engine='sqlite', path=site['db'], migrations=site['folder']))
    assert not result.get('failed'), result.get('msg')
    assert 't' in tables(site['db'])


def test_dotdot_in_the_migrations_folder_is_refused(site):
    folder = os.path.join(site['tmp'], 'outside', '..', 'sql')
    for check in (True, False):
        result = run_module(dict(engine='sqlite', path=site['db'], migrations=folder), check=check)
        assert result.get('failed') and 'migrations' in result['msg'] and '..' in result['msg']
        assert tables(site['db']) == []
