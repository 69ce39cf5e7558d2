"""`--limit` and separate jobs, as sites and AWX run them: one server alone, then its clients in a job of their own.

The clients' job has no server in it: each client learns its server's result from the server itself (its version
and journal, read at run time), not from the variables of a run that already ended.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}


def version(lab, host):
    with open(os.path.join(lab, 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
        return handle.read().strip()


def reports(lab):
    folder = os.path.join(lab, 'reports')
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith('.json'):
            with open(os.path.join(folder, name), encoding='utf-8') as handle:
                data = json.load(handle)
            found[data['run_id']] = data
    return found


def test_one_server_then_its_clients_as_separate_jobs(tmp_path):
    lab = str(tmp_path / 'lab')
    inventory = build_lab.build(lab, clients=2, servers=1, rows=500, quiet=True)
    try:
        # a clients-only job before the server: the clients are held back, nothing of theirs changes
        early = run_playbook(PLAYBOOK, inventory=inventory, env=ENV, args=['--limit', 'clients', '-e', 'upgrade_run_id=early'])
        assert early.rc == 0, early
        assert [version(lab, h) for h in ('server1', 'client1', 'client2')] == [build_lab.OLD_VERSION] * 3
        report = reports(lab)['early']
        assert sorted(h['host'] for h in report['hosts']) == ['client1', 'client2']
        assert {h['result'] for h in report['hosts']} == {'held_back'}

        # the everyday case: one server alone
        servers = run_playbook(PLAYBOOK, inventory=inventory, env=dict(ENV, ANSIBLE_SHOW_CUSTOM_STATS='true'),
                               args=['--limit', 'server1', '-e', 'upgrade_run_id=servers'])
        assert servers.rc == 0, servers
        assert version(lab, 'server1') == build_lab.NEW_VERSION
        assert version(lab, 'client1') == version(lab, 'client2') == build_lab.OLD_VERSION
        report = reports(lab)['servers']
        assert [h['host'] for h in report['hosts']] == ['server1']      # the report covers the run's hosts only
        assert report['hosts'][0]['result'] == 'upgraded'
        stats = servers.data['global_custom_stats']['upgrade_report']  # set_stats: what AWX shows as artifacts
        assert stats['run_id'] == 'servers' and stats['failed_hosts'] == [] and stats['json'].endswith('upgrade-servers.json')

        # then the clients in a job of their own: they read their server's result from the server
        clients = run_playbook(PLAYBOOK, inventory=inventory, env=ENV, args=['--limit', 'clients', '-e', 'upgrade_run_id=clients'])
        assert clients.rc == 0, clients
        assert version(lab, 'client1') == version(lab, 'client2') == build_lab.NEW_VERSION
        report = reports(lab)['clients']
        assert sorted(h['host'] for h in report['hosts']) == ['client1', 'client2']
        assert {h['result'] for h in report['hosts']} == {'upgraded'}
    finally:
        build_lab.teardown(lab, quiet=True)
