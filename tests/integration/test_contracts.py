"""Every task of the project against the documented options of the module it calls (see contracts.py).

The modules of other collections (ansible.windows, community.general, awx.awx, ...) cannot all run here (no
Windows host, no AWX server): their documentation, read from the pinned ``ansible`` package at test time, is the
contract our calls must keep. A renamed, misspelled or removed option fails here.
"""
import pytest

import contracts


def test_every_task_keeps_its_modules_contract():
    tasks = contracts.project_tasks()
    problems, docs = contracts.check(tasks)
    assert not problems, '\n'.join(problems)
    # the walk really found the project's tasks and the modules of other collections they call
    assert len(tasks) > 100
    assert {'clinops.upgrade.upgrade_cutover', 'clinops.upgrade.upgrade_journal', 'community.general.mail'} <= set(docs)


BROKEN = [
    ({'name': 'x', 'ansible.windows.win_service': {'name': 'svc', 'state': 'stoped'}},
     "state='stoped' is not one of ['absent', 'paused', 'started', 'stopped', 'restarted']"),
    ({'name': 'x', 'ansible.windows.win_service': {'name': 'svc', 'force_dependent_service': True}},
     "'force_dependent_service' is not an option of this module"),
    ({'name': 'x', 'ansible.windows.win_copy': {'src': 'a'}},
     "the required option 'dest' is missing"),
    ({'name': 'x', 'clinops.upgrade.db_backup': {'engine': 'sqlite', 'path': '/x', 'dest': '/b', 'verify': 'full'}},
     "verify='full' is not one of"),
    ({'name': 'x', 'awx.awx.job_template': {'name': 'j', 'job_slice_count': 'two'}},
     "job_slice_count='two' is not of type int"),
    ({'name': 'x', 'win_service': {'name': 'svc'}},
     "'win_service' is not a fully qualified module name"),
    ({'name': 'x', 'ansible.windows.win_nosuchmodule': {'name': 'svc'}},
     'ansible.windows.win_nosuchmodule is not a module of the installed collections'),
]


@pytest.mark.parametrize('task,message', BROKEN, ids=[str(i) for i in range(len(BROKEN))])
def test_a_broken_call_is_caught(task, message):
    problems, dummy = contracts.check([('case', task)])
    assert problems and message in problems[0], problems


def test_templated_values_are_checked_by_name_only():
    task = {'name': 'x', 'ansible.windows.win_service': {'name': '{{ svc }}', 'state': '{{ wanted }}'}}
    assert contracts.check([('case', task)])[0] == []
    task = {'name': 'x', 'ansible.windows.win_service': {'name': '{{ svc }}', 'stat': '{{ wanted }}'}}
    assert "'stat' is not an option" in contracts.check([('case', task)])[0][0]
