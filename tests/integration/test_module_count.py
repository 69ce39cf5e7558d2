"""The bench's module-execution counter (tests/integration/callback_plugins/module_count.py) counts real executions.

A playbook with known module counts runs on two local hosts through a real ansible-playbook: ``command`` runs one
module, ``copy`` of one file runs ``stat`` then ``copy`` (a second run with the file in place runs ``stat`` then
``file``), ``set_fact`` runs none, and a ``command`` delegated to localhost counts for localhost, not for the host it
was written for. The counts read back from the JSON the callback writes must be exactly these, never 0.
"""
import json
import os
import sys

from harness import module_count_env, run_playbook  # noqa: E402  pylint: disable=wrong-import-position


def _play(tmp_path):
    source = tmp_path / 'source.txt'
    source.write_text('one file\n', encoding='ascii')
    return [{
        'name': 'known module counts', 'hosts': 'all', 'gather_facts': False,
        'tasks': [
            {'name': 'one command', 'ansible.builtin.command': 'true', 'changed_when': False},
            {'name': 'one copy', 'ansible.builtin.copy': {
                'src': str(source), 'dest': str(tmp_path / 'copy-{{ inventory_hostname }}.txt'), 'mode': '0644'}},
            {'name': 'no module', 'ansible.builtin.set_fact': {'counted': False}},
            {'name': 'delegated', 'ansible.builtin.command': 'true', 'changed_when': False,
             'delegate_to': 'localhost', 'when': "inventory_hostname == 'other'"},
        ]}]


def _run(tmp_path, name):
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text(''.join('%s ansible_connection=local ansible_python_interpreter=%s\n' % (host, sys.executable)
                                 for host in ('localhost', 'other')), encoding='ascii')
    counts = str(tmp_path / ('%s.json' % name))
    result = run_playbook(_play(tmp_path), inventory=str(inventory), env=module_count_env(counts))
    assert result.rc == 0, result
    with open(counts, encoding='utf-8') as handle:
        per_host = json.load(handle)
    with open(counts + '.modules.json', encoding='utf-8') as handle:
        per_module = json.load(handle)
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.events')]    # the scratch file is gone
    return per_host, per_module


def test_module_count_counts_executions_not_tasks(tmp_path):
    per_host, per_module = _run(tmp_path, 'first')
    # other: command 1 + copy 2 (stat, copy) + set_fact 0; its delegated command counts for localhost
    assert per_host == {'localhost': 4, 'other': 3}
    assert per_module == {
        'localhost': {'ansible.legacy.command': 2, 'ansible.legacy.stat': 1, 'ansible.legacy.copy': 1},
        'other': {'ansible.legacy.command': 1, 'ansible.legacy.stat': 1, 'ansible.legacy.copy': 1},
    }
    assert (tmp_path / 'copy-other.txt').read_text(encoding='ascii') == 'one file\n'

    # the same play again: the file is in place, so copy runs stat then file (still 2), counted afresh
    per_host, per_module = _run(tmp_path, 'second')
    assert per_host == {'localhost': 4, 'other': 3}
    assert per_module['other'] == {'ansible.legacy.command': 1, 'ansible.legacy.stat': 1, 'ansible.legacy.file': 1}


def test_module_count_writes_nothing_without_its_variable(tmp_path):
    env = module_count_env(str(tmp_path / 'unused.json'))
    env['CLINOPS_MODULE_COUNT'] = ''
    result = run_playbook([{'name': 'p', 'hosts': 'localhost', 'gather_facts': False,
                            'tasks': [{'ansible.builtin.command': 'true', 'changed_when': False}]}], env=env)
    assert result.rc == 0, result
    assert os.listdir(tmp_path) == []
