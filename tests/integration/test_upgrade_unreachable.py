"""Hosts that are off do not hold the site (issue #18), on the lab that lab/build_lab.py builds.

A host is made unreachable for real: its inventory entry connects over SSH to a loopback port where nothing listens
(a workstation switched off for the night: the connection is refused). The run upgrades the server and the reachable
clients, reports the other "not reached" and leaves it as it was, writes every report format naming it, and the next
run, with the host reachable again, upgrades it. A server not reached holds its own clients back before anything of
its site stops. A batch of clients that fails beyond the site's max_fail_percentage holds the later batches back,
and the report is still written.
"""
# pylint: disable=redefined-outer-name
import hashlib
import os
import re

import pytest

from labtools import Lab  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error


@pytest.fixture
def lab(tmp_path):
    root = str(tmp_path / 'lab')
    inventory = build_lab.build(root, clients=2, servers=1, rows=500, quiet=True)
    yield Lab(root, inventory)
    build_lab.teardown(root, quiet=True)


def switch_off(lab, group, host):
    """The host's connection goes over SSH to a free loopback port: nothing listens there, the connection is refused."""
    entry = lab.inv['all']['children'][group]['hosts'][host]
    entry.update(ansible_connection='ssh', ansible_host='127.0.0.1', ansible_port=procs.free_port(), ansible_user='root',
                 ansible_ssh_common_args='-o ConnectTimeout=5 -o ControlMaster=no')
    lab.write_inventory()
    return entry


def switch_on(lab, group, host):
    entry = lab.inv['all']['children'][group]['hosts'][host]
    for key in ('ansible_connection', 'ansible_host', 'ansible_port', 'ansible_user', 'ansible_ssh_common_args'):
        entry.pop(key, None)
    lab.write_inventory()


def host_tree(lab, host):
    """sha256 of every file in the host's folder (installation, state, backups), its services' logs left out (as
    Lab.tree_hash does: the lab's DICOM node logs every association it receives, preflight's C-ECHO included)."""
    digest = {}
    base = os.path.join(lab.root, 'hosts', host)
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not (folder == base and d == 'logs'))
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, 'rb') as handle:
                digest[os.path.relpath(path, base)] = hashlib.sha256(handle.read()).hexdigest()
    return digest


def report_files(lab, run_id):
    """The three report files of the run: {extension: text}."""
    base = os.path.join(lab.root, 'reports', 'upgrade-%s' % run_id)
    found = {}
    for ext in ('json', 'md', 'html'):
        assert os.path.isfile(base + '.' + ext), 'no %s report for run %s' % (ext, run_id)
        with open(base + '.' + ext, encoding='utf-8') as handle:
            found[ext] = handle.read()
    return found


def test_a_client_that_is_off_is_reported_not_reached_and_the_next_run_upgrades_it(lab):
    switch_off(lab, 'clients', 'client2')
    before = host_tree(lab, 'client2')
    result = lab.run(args=['-e', 'upgrade_run_id=night1'])
    # a client that is off does not fail the run (upgrade_report_fail_on_not_reached_client: false)
    assert result.rc == 0, result
    assert lab.version('server1') == lab.version('client1') == build_lab.NEW_VERSION
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS 4.4.0')
    assert lab.version('client2') == build_lab.OLD_VERSION
    assert host_tree(lab, 'client2') == before                 # not a byte of it touched
    assert lab.journal('client2') == []
    files = report_files(lab, 'night1')
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'upgraded' and report['client1']['result'] == 'upgraded'
    assert report['client2']['result'] == 'not_reached'
    assert 'Connection refused' in report['client2']['message']
    assert lab.report()['still_to_do'] == ['client2']
    assert [h['host'] for h in lab.report()['hosts']] == ['server1', 'client1', 'client2']
    assert re.search(r'\| client2 \|.*\| not_reached \|', files['md'])
    assert 'Still to do' in files['md'] and 'client2 (not_reached)' in files['md']
    assert 'client2' in files['html'] and 'not_reached' in files['html'] and 'Still to do' in files['html']
    summary = [t for t in result.tasks if t['task']['name'].endswith('Show the summary')]
    assert any('Still to do (1' in line and 'client2' in line for line in summary[-1]['hosts']['localhost']['msg'])

    # the next night it is on: the next run picks it up; the server and client1 have nothing left to do
    switch_on(lab, 'clients', 'client2')
    result = lab.run(args=['-e', 'upgrade_run_id=night2'])
    assert result.rc == 0, result
    assert lab.version('client2') == build_lab.NEW_VERSION
    report_files(lab, 'night2')
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['client2']['result'] == 'upgraded'
    assert report['server1']['result'] == report['client1']['result'] == 'current'
    assert lab.report()['still_to_do'] == []
    assert result.stats['server1']['changed'] == 0


def test_a_server_that_is_off_holds_its_clients_back_and_the_reports_are_written(lab):
    switch_off(lab, 'servers', 'server1')
    pids = lab.supervisor_pids()
    trees = {h: host_tree(lab, h) for h in lab.hosts}
    result = lab.run(args=['-e', 'upgrade_run_id=serveroff'])
    assert result.rc != 0                                    # a server not reached fails the run
    assert lab.supervisor_pids() == pids                     # nothing of the site stopped
    assert {h: host_tree(lab, h) for h in lab.hosts} == trees
    files = report_files(lab, 'serveroff')
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'not_reached'
    assert report['client1']['result'] == report['client2']['result'] == 'held_back'
    assert 'server1' in report['client1']['message']
    assert sorted(lab.report()['still_to_do']) == ['client1', 'client2', 'server1']
    assert 'not_reached' in files['md'] and 'held_back' in files['html']


def test_a_batch_failing_beyond_max_fail_percentage_holds_the_later_batches_back(lab):
    # client1's staging folder is taken by a file: its stage step fails
    with open(lab.install('client1') + '_staging', 'w', encoding='ascii') as handle:
        handle.write('in the way\n')
    result = lab.run(args=['-e', 'upgrade_run_id=batches', '-e', 'upgrade_client_serial=1',
                           '-e', 'upgrade_client_max_fail_percentage=0'])
    assert result.rc != 0                                    # the report play judged the run
    files = report_files(lab, 'batches')
    assert lab.version('server1') == build_lab.NEW_VERSION
    assert lab.version('client1') == lab.version('client2') == build_lab.OLD_VERSION
    assert lab.journal('client2') == []                      # the second batch was never started
    report = {h['host']: h for h in lab.report()['hosts']}
    # nothing of client1 had been stopped or swapped: its attempt is closed as failed, the old version untouched
    assert report['client1']['result'] in ('rolled_back', 'failed'), report['client1']
    assert report['client2']['result'] == 'held_back'
    assert 'max_fail_percentage' in report['client2']['message'] and 'client1' in report['client2']['message']
    assert report['client1']['batch'] == 1 and report['client2']['batch'] == 2
    assert 'held_back' in files['md']
