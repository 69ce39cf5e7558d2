# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Profiles: the schema against broken profiles (exact messages), drafts, and overrides merged by name.

The broken profiles are pmod.yml as shipped with one or more keys broken; the messages are the ones a user reads.
"""

from __future__ import annotations

import copy
import glob
import os

import pytest
import yaml

from ansible_collections.clinops.upgrade.plugins.plugin_utils import profile as P

SCHEMA = P.load_schema()


def shipped(name):
    with open(os.path.join(P.PROFILES_DIR, name + '.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


PMOD = shipped('pmod')
DELETE = object()


def broken(**changes):
    """pmod.yml with ``changes`` applied: {'a__b': value} sets a.b, {'a__b': DELETE} removes it."""
    data = copy.deepcopy(PMOD)
    for dotted, value in changes.items():
        parts = [int(p) if p.isdigit() else p for p in dotted.split('__')]
        node = data
        for part in parts[:-1]:
            node = node[part]
        if value is DELETE:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
    return data


# (what is broken, the keys changed in pmod.yml, the exact problems reported)
BROKEN = [
    ('misspelled key', {'database__backup_befor': True},
     ['database.backup_befor: unknown key; did you mean backup_before?']),
    ('unknown backend', {'services__2__backend': 'sytemd'},
     ["services[2].backend: 'sytemd' is not one of auto, systemd, sysvinit, supervisor, script, windows"]),
    ('unknown top-level key with nothing close', {'zzz_extra': 1},
     ['zzz_extra: unknown key']),
    ('a removed dead key', {'version__blocks': 3},
     ['version.blocks: unknown key; did you mean major_blocks?']),
    ('post_task for post_tasks', {'post_task': ['x']},
     ['post_task: unknown key; did you mean post_tasks?']),
    ('wrong type', {'verify_wait': 'sixty'},
     ['verify_wait: expected integer, got string']),
    ('boolean as string', {'database__backup_before': 'yes'},
     ['database.backup_before: expected boolean, got string']),
    ('missing required key', {'version__file': DELETE},
     ['version.file: missing (required)']),
    ('missing top-level keys', {'status': DELETE, 'artifact': DELETE},
     ['artifact: missing (required)', 'status: missing (required)']),
    ('bad window time', {'window': {'from': '25:00', 'to': '05:00'}},
     ["window.from: '25:00' does not match ^([01][0-9]|2[0-3]):[0-5][0-9]$"]),
    ('weekday out of range', {'window': {'weekdays': [1, 8]}},
     ['window.weekdays[1]: 8 is more than the maximum 7']),
    ('negative keep_old', {'layout__keep_old': -1},
     ['layout.keep_old: -1 is less than the minimum 0']),
    ('size factor zero', {'artifact__size_factor': 0},
     ['artifact.size_factor: 0 is not more than 0']),
    ('no services', {'services': []},
     ['services: needs at least 1 entry']),
    ('service without name', {'services__1__name': DELETE},
     ['services[1].name: missing (required)']),
    ('unknown check type', {'health_checks__server__2__type': 'ping'},
     ["health_checks.server[2].type: 'ping' is not one of command, tcp, dicom"]),
    ('misspelled check key', {'health_checks__server__0__expcet': '^OK'},
     ['health_checks.server[0].expcet: unknown key; did you mean expect?']),
    ('unknown engine', {'database__connection__engine': 'oracle'},
     ["database.connection.engine: 'oracle' is not one of postgresql, mysql, sqlite, firebird, files, mssql"]),
    ('unknown status', {'status': 'final'},
     ["status: 'final' is not one of complete, draft"]),
    ('preference mode', {'preferences__server__0__mode': 'replace'},
     ["preferences.server[0].mode: 'replace' is not one of copy, keep, merge"]),
    ('email as a number', {'notify': {'email': 5}},
     ['notify.email: expected string or list, got integer']),
    ('argv as a string', {'health_checks__server__0__argv': 'bin/pmodctl.py echo-ts'},
     ['health_checks.server[0].argv: expected list, got string']),
    ('a list where a mapping belongs', {'database': [1]},
     ['database: expected mapping, got list']),
    ('every problem at once, sorted by path',
     {'services__2__backend': 'sytemd', 'database__backup_befor': True, 'verify_wait': 'sixty', 'layout__keep_old': -1},
     ['database.backup_befor: unknown key; did you mean backup_before?',
      'layout.keep_old: -1 is less than the minimum 0',
      "services[2].backend: 'sytemd' is not one of auto, systemd, sysvinit, supervisor, script, windows",
      'verify_wait: expected integer, got string']),
]


@pytest.mark.parametrize('changes, expected', [(case[1], case[2]) for case in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_profile_gets_exact_messages(changes, expected):
    assert P.validate(broken(**changes), SCHEMA) == expected


@pytest.mark.parametrize('name', sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(P.PROFILES_DIR, '*.yml'))))
def test_every_shipped_profile_validates(name):
    assert P.validate(shipped(name), SCHEMA) == []


def test_the_four_profiles_are_shipped():
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(P.PROFILES_DIR, '*.yml')))
    assert names == ['conaktiv', 'imageserver', 'ksamu', 'pmod']


def test_templated_values_are_left_to_the_modules():
    data = broken(verify_wait='{{ site_wait }}', services__0__backend='{{ site_backend }}', layout__keep_old='{% if x %}1{% endif %}')
    assert P.validate(data, SCHEMA) == []


def test_a_misspelled_key_is_found_even_under_a_templated_value():
    data = broken(database__connection={'engine': '{{ e }}', 'login_pasword': '{{ pw }}'})
    assert P.validate(data, SCHEMA) == ['database.connection.login_pasword: unknown key; did you mean login_password?']


def test_a_wrong_password_type_does_not_echo_the_value():
    data = broken(database__connection={'engine': 'postgresql', 'login_password': 918273645})
    problems = P.validate(data, SCHEMA)
    assert problems == ['database.connection.login_password: expected string, got integer']
    assert '918273645' not in ' '.join(problems)


def test_not_a_mapping():
    assert P.validate(['name', 'pmod'], SCHEMA) == ['(top level): expected mapping, got list']


def test_a_draft_is_refused_and_accepted_with_the_flag():
    ksamu = dict(shipped('ksamu'), status='draft')   # every shipped profile is complete now: one marked as a draft
    with pytest.raises(P.ProfileError) as caught:
        P.check_profile(ksamu, SCHEMA)
    assert caught.value.problems == ['status: the profile ksamu is a draft (not tested end to end); '
                                     'set upgrade_profile_accept_draft: true to run it anyway']
    assert P.check_profile(ksamu, SCHEMA, accept_draft=True)['status'] == 'draft'


def test_a_draft_with_problems_gets_both():
    data = dict(shipped('conaktiv'), status='draft', verify_wait='long')
    with pytest.raises(P.ProfileError) as caught:
        P.check_profile(data, SCHEMA)
    assert caught.value.problems == ['verify_wait: expected integer, got string',
                                     'status: the profile conaktiv is a draft (not tested end to end); '
                                     'set upgrade_profile_accept_draft: true to run it anyway']


def test_a_typo_in_the_overrides_is_reported_like_one_in_the_file():
    with pytest.raises(P.ProfileError) as caught:
        P.check_profile(PMOD, SCHEMA, overrides={'database': {'backup_kep': 7}, 'services': [{'name': 'pmod-ts', 'backend': 'sytemd'}]})
    assert caught.value.problems == [
        'database.backup_kep: unknown key; did you mean backup_keep?',
        "services[1].backend: 'sytemd' is not one of auto, systemd, sysvinit, supervisor, script, windows"]


def test_removing_an_entry_that_does_not_exist_is_a_problem():
    with pytest.raises(P.ProfileError) as caught:
        P.check_profile(PMOD, SCHEMA, overrides={'services': [{'name': 'pmod-xx', 'state': 'absent'}]})
    assert caught.value.problems == ["upgrade_profile_overrides.services[0]: name 'pmod-xx' is removed but the profile has no such entry"]


# --------------------------------------------------------------------------------------------------
# merge

def test_dicts_are_deep_merged():
    merged = P.merge(PMOD, {'database': {'backup_keep': 7}})
    assert merged['database']['backup_keep'] == 7
    assert merged['database']['backup_verify'] == 'quick'
    assert merged['database']['connection'] == PMOD['database']['connection']


def test_services_merge_by_name_and_keep_the_stop_order():
    merged = P.merge(PMOD, {'services': [{'name': 'pmod-ts', 'timeout': 90}]})
    assert [s['name'] for s in merged['services']] == ['pmod-ds', 'pmod-ts', 'pmod-ls']
    assert merged['services'][1] == dict(PMOD['services'][1], timeout=90)
    assert merged['services'][0] == PMOD['services'][0]


def test_a_new_service_is_appended_and_state_absent_removes_one():
    merged = P.merge(PMOD, {'services': [{'name': 'pmod-ls', 'state': 'absent'}, {'name': 'pmod-web', 'backend': 'systemd'}]})
    assert [s['name'] for s in merged['services']] == ['pmod-ds', 'pmod-ts', 'pmod-web']
    assert merged['services'][2] == {'name': 'pmod-web', 'backend': 'systemd'}


def test_checks_merge_by_name_and_preference_items_by_path():
    merged = P.merge(PMOD, {
        'health_checks': {'server': [{'name': 'Echo DB', 'state': 'absent'}, {'name': 'Echo TS', 'expect': '^OK'}]},
        'preferences': {'client': [{'path': 'properties/Dicom.properties', 'required': True}]},
    })
    assert [c['name'] for c in merged['health_checks']['server']] == ['Echo TS', 'C-ECHO to the DICOM server']
    assert merged['health_checks']['server'][0]['expect'] == '^OK'
    assert merged['health_checks']['server'][0]['argv'] == PMOD['health_checks']['server'][0]['argv']
    assert merged['health_checks']['client'] == PMOD['health_checks']['client']
    assert merged['preferences']['client'][1] == {'path': 'properties/Dicom.properties', 'mode': 'merge',
                                                  'format': 'properties', 'required': True}
    assert len(merged['preferences']['client']) == 2


def test_start_scripts_merge_by_dest():
    merged = P.merge(PMOD, {'start_scripts': [{'dest': 'bin/start-ls.sh', 'state': 'absent'}]})
    assert [s['dest'] for s in merged['start_scripts']] == ['bin/start-ts.sh', 'bin/start-ds.sh']


def test_plain_lists_and_scalars_are_replaced():
    merged = P.merge(PMOD, {'restart_after_verify': [], 'verify_wait': 5,
                            'health_checks': {'server': [{'name': 'Echo TS', 'argv': ['true']}]}})
    assert merged['restart_after_verify'] == []
    assert merged['verify_wait'] == 5
    assert merged['health_checks']['server'][0]['argv'] == ['true']


def test_merge_leaves_its_inputs_alone():
    before = copy.deepcopy(PMOD)
    override = {'services': [{'name': 'pmod-ts', 'timeout': 90}], 'database': {'backup_keep': 7}}
    merged = P.merge(PMOD, override)
    merged['services'][0]['name'] = 'changed'
    merged['database']['connection']['engine'] = 'changed'
    assert PMOD == before
    assert override == {'services': [{'name': 'pmod-ts', 'timeout': 90}], 'database': {'backup_keep': 7}}


def test_an_override_list_without_names_replaces_a_named_one():
    merged = P.merge(PMOD, {'preferences': {'server': []}})
    assert merged['preferences']['server'] == []


# --------------------------------------------------------------------------------------------------
# small helpers

@pytest.mark.parametrize('word, expected', [
    ('backup_befor', 'backup_before'), ('helth_checks', 'health_checks'), ('zzz', None), ('', None)])
def test_did_you_mean(word, expected):
    candidates = ['backup_before', 'backup_after', 'health_checks', 'services']
    assert P.did_you_mean(word, candidates) == expected


@pytest.mark.parametrize('parts, expected', [
    (['services', 2, 'backend'], 'services[2].backend'), (['a', 'b'], 'a.b'), ([], '(top level)'),
    (['health_checks', 'server', 0, 'argv', 1], 'health_checks.server[0].argv[1]')])
def test_format_path(parts, expected):
    assert P.format_path(parts) == expected


def test_schema_keys_walks_lists_of_mappings():
    paths = [key[0] for key in P.schema_keys(SCHEMA)]
    assert 'services[].backend' in paths
    assert 'health_checks.server[].called_aet' in paths
    assert 'database.connection.login_password' in paths
    assert len(paths) == len(set(paths))
