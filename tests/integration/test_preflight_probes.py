"""Preflight's C-ECHO goes to each distinct DICOM node once per run, not once per host (issues #18 and the reliability
issue's "probes must not wear out a DICOM node"), on the lab that lab/build_lab.py builds.

The lab's DICOM node (a real pynetdicom SCP, lab/pmod/bin/pmod_ds.py) logs every association request it receives with
the calling AE title; the tests count those lines. The server checks its own node and every client checks its server's
node: one node, so one association in preflight, whatever the number of clients.
"""
# pylint: disable=redefined-outer-name
import json
import os

import pytest

from harness import module_count_env, run_playbook  # noqa: E402  pylint: disable=wrong-import-position
from labtools import ENV, PLAYBOOK, Lab  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error


@pytest.fixture
def lab(tmp_path):
    root = str(tmp_path / 'lab')
    inventory = build_lab.build(root, clients=3, servers=1, rows=200, quiet=True)
    yield Lab(root, inventory)
    build_lab.teardown(root, quiet=True)


def associations(lab):
    """The association requests the server's DICOM node logged so far, as their calling AE titles."""
    path = os.path.join(lab.root, 'hosts', 'server1', 'logs', 'pmod-ds.log')
    with open(path, encoding='utf-8', errors='replace') as handle:
        return [line.split('association requested by AE ', 1)[1].split(' from ', 1)[0]
                for line in handle if 'association requested by AE ' in line]


def test_preflight_sends_one_association_per_distinct_node_not_one_per_host(lab, tmp_path):
    before = associations(lab)
    counts = str(tmp_path / 'counts.json')
    result = run_playbook(PLAYBOOK, inventory=lab.inventory, check=True, env=dict(ENV, **module_count_env(counts)),
                          timeout=1200)
    assert result.rc == 0, result
    sent = associations(lab)[len(before):]
    # 4 hosts (the server and 3 clients) check the same node: one association, from preflight's calling AE
    assert sent == ['CLINOPS_UPG'], sent
    with open(counts + '.modules.json', encoding='utf-8') as handle:
        modules = json.load(handle)
    echoes = {host: n.get('clinops.upgrade.dicom_echo', 0) for host, n in modules.items()}
    assert sum(echoes.values()) == 1 and echoes.get('localhost') == 1, echoes
    # every host was still judged on its own answer: each is planned, none refused
    report = {h['host']: h for h in lab.report()['hosts']}
    assert sorted(report) == ['client1', 'client2', 'client3', 'server1']
    assert {h['result'] for h in report.values()} == {'planned'}, report
    for host in lab.hosts:
        assert lab.version(host) == build_lab.OLD_VERSION


def test_a_client_whose_node_does_not_answer_is_refused_alone(lab):
    """client2 checks a DICOM node where nothing listens: only client2 is refused; the server and the other clients
    upgrade."""
    lab.set_host_var('clients', 'client2', 'pmod_server_ports',
                     {'ts': lab.server['pmod_ports']['ts'], 'dicom': procs.free_port()})
    result = lab.run(args=['-e', 'preflight_dicom_wait=1'])
    assert result.rc != 0                               # the report play fails the run, naming client2
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['client2']['result'] == 'refused', report['client2']
    assert 'DICOM node does not answer a C-ECHO' in report['client2']['message']
    dead_port = lab.inv['all']['children']['clients']['hosts']['client2']['pmod_server_ports']['dicom']
    assert '"port": %d' % dead_port in report['client2']['message']
    assert 'DICOM node does not answer' not in report['client1']['message']
    assert report['server1']['result'] == report['client1']['result'] == report['client3']['result'] == 'upgraded'
    assert lab.version('server1') == lab.version('client1') == lab.version('client3') == build_lab.NEW_VERSION
    assert lab.version('client2') == build_lab.OLD_VERSION
    assert lab.journal('client2') == []
