"""End to end: playbooks/upgrade.yml on the lab that lab/build_lab.py builds (real supervisord, pynetdicom, SQLite).

Each test builds its own lab in a temporary folder and tears it down (supervisord stopped by PID).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from labtools import ENV, PLAYBOOK, ROOT, Lab, descendants, properties  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import ansible_env, module_count_env, run_playbook  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def lab(tmp_path):
    root = str(tmp_path / 'lab')
    inventory = build_lab.build(root, clients=2, servers=1, rows=3000, quiet=True)
    yield Lab(root, inventory)
    build_lab.teardown(root, quiet=True)


# Few round trips per host (issue 18): module executions on each host, counted by the module_count callback around
# ActionBase._execute_module (a task delegated to localhost counts for localhost). A count, not a timing.
CLIENT_MAX_MODULES = 4
SERVER_MAX_MODULES = 8  # besides the downtime task (the one upgrade_cutover execution)


def test_check_mode_then_upgrade_then_rerun_changes_nothing(lab, tmp_path):
    before_tree, before_dump, before_pids = lab.tree_hash(), lab.dump(), lab.supervisor_pids()
    result = lab.run(check=True)
    assert result.rc == 0, result
    assert lab.tree_hash() == before_tree
    assert lab.dump() == before_dump
    assert lab.supervisor_pids() == before_pids
    plan = {h['host']: h for h in lab.report()['hosts']}
    assert plan['server1']['result'] == 'planned'
    assert plan['server1']['plan']['stop_order'] == ['pmod-ds', 'pmod-ts', 'pmod-ls']
    assert plan['server1']['plan']['pending_migrations']['offline'] == ['V4.3.2__study_status.sql']
    rows_before = lab.product_rows()

    counts_file = str(tmp_path / 'module-counts.json')
    result = run_playbook(PLAYBOOK, inventory=lab.inventory, env=dict(ENV, **module_count_env(counts_file)), timeout=1200)
    assert result.rc == 0, result
    with open(counts_file, encoding='utf-8') as handle:
        counts = json.load(handle)
    with open(counts_file + '.modules.json', encoding='utf-8') as handle:
        modules = json.load(handle)
    print('module executions per host:', json.dumps(modules, sort_keys=True))
    for client in ('client1', 'client2'):
        assert 0 < counts[client] <= CLIENT_MAX_MODULES, (client, modules[client])
    assert sum(n for m, n in modules['server1'].items() if m.endswith('upgrade_cutover')) == 1, modules['server1']
    assert 0 < counts['server1'] - 1 <= SERVER_MAX_MODULES, modules['server1']
    cutover = [t for t in result.tasks if t['task']['name'].endswith('in one task')]
    assert {h for t in cutover for h in t['hosts'] if not t['hosts'][h].get('skipped')} == set(lab.hosts)
    for host in lab.hosts:
        assert lab.version(host) == build_lab.NEW_VERSION
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS 4.4.0')
    assert lab.ctl('echo-db') == 'OK schema=4.4.0 studies=1500'
    rows_after = lab.product_rows()
    assert rows_after['legacy_notes'] is None  # the post migration ran
    assert len(rows_after['series'][1]) == len(rows_before['series'][1]) == 3000
    assert 'status' in rows_after['studies'][0]
    props = properties(os.path.join(lab.install('server1'), 'properties', 'Config.properties'))
    assert props['license.seats'] == '25'            # a site value carried over
    assert props['ts.timeout'] == '60'               # an old default not frozen: the new default wins
    assert props['ts.max_connections'] == '64'       # a key the new release added
    assert 'legacy.viewer' not in props              # a key the new release dropped
    assert os.path.isdir(lab.install('server1') + '_old0001')
    assert not os.path.exists(lab.install('server1') + '_staging')
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'upgraded'
    assert report['server1']['from_version'] == '4.3.0' and report['server1']['to_version'] == '4.4.0'
    assert 0 < float(report['server1']['downtime_s']) < 300
    assert all(report[c]['result'] == 'upgraded' for c in ('client1', 'client2'))
    steps = [e['step'] for e in lab.journal() if e['result'] == 'ok']
    assert steps.index('stage') < steps.index('stop') < steps.index('swap') < steps.index('verify')

    tree, dump = lab.tree_hash(), lab.dump()
    result = lab.run()
    assert result.rc == 0, result
    for host in lab.hosts + ['localhost']:
        assert result.stats[host]['changed'] == 0, (host, result.stats[host])
    assert lab.report()['nothing_to_do'] is True
    assert lab.tree_hash() == tree and lab.dump() == dump


def test_broken_migration_rolls_back_to_the_verified_old_version(lab):
    build_lab.make_release(lab.root, build_lab.NEW_VERSION, broken=True)
    rows = lab.product_rows()
    props_file = os.path.join(lab.install('server1'), 'properties', 'Config.properties')
    with open(props_file, 'rb') as handle:
        props_before = handle.read()
    result = lab.run()
    assert result.rc != 0
    assert lab.version('server1') == build_lab.OLD_VERSION
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS 4.3.0')
    assert lab.ctl('echo-db').startswith('OK schema=4.3.0')
    assert lab.product_rows() == rows
    with open(props_file, 'rb') as handle:
        assert handle.read() == props_before
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'rolled_back'
    assert 'migrate_offline' in report['server1']['message'] and 'restored' in report['server1']['message']
    for client in ('client1', 'client2'):
        assert report[client]['result'] == 'held_back'
        assert lab.version(client) == build_lab.OLD_VERSION
    assert lab.journal()[-1]['result'] == 'rolled_back'
    assert not os.path.exists(os.path.join(lab.root, 'hosts', 'server1', 'state', 'upgrade.lock'))


def test_killed_in_the_middle_of_the_server_upgrade_then_rerun_finishes(lab):
    rows = lab.product_rows()
    cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', lab.inventory, PLAYBOOK]
    proc = subprocess.Popen(cmd, env=ansible_env(ENV), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(e['step'] == 'swap' and e['result'] == 'ok' for e in lab.journal()):
                break
            time.sleep(0.2)
        assert proc.poll() is None, 'the playbook ended before the swap'
    finally:
        # a crash of the controller: ansible-playbook and everything under it (its workers run in sessions of
        # their own, and a module they run would otherwise finish its step and journal it)
        tree = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    journal = lab.journal()
    assert journal[-1]['step'] != 'finish'
    assert os.path.exists(os.path.join(lab.root, 'hosts', 'server1', 'state', 'upgrade.lock'))
    result = lab.run()
    assert result.rc == 0, result
    assert lab.version('server1') == build_lab.NEW_VERSION
    assert lab.ctl('echo-db') == 'OK schema=4.4.0 studies=1500'
    assert len(lab.product_rows()['series'][1]) == len(rows['series'][1])
    attempt = [e for e in lab.journal() if e['attempt'] == journal[-1]['attempt']]
    assert [e['step'] for e in attempt if e['result'] == 'ok'].count('stop') == 1  # resumed, not started over
    assert attempt[-1]['result'] == 'upgraded'
    assert not os.path.exists(lab.install('server1') + '_old0002')
    for client in ('client1', 'client2'):
        assert lab.version(client) == build_lab.NEW_VERSION


def test_client_pinned_newer_than_its_server_is_refused_and_does_not_hold_the_site(lab):
    """Issue #18: a refused client is left as it is and reported; its server and the other clients upgrade."""
    lab.set_host_var('clients', 'client2', 'upgrade_target_version', '4.5.0')
    journal = os.path.join(lab.root, 'hosts', 'client2')
    before = {name: os.path.getmtime(os.path.join(journal, name)) for name in os.listdir(journal)}
    result = lab.run()
    assert result.rc != 0                               # the report play fails the run, naming client2
    out = result.stdout + result.stderr
    assert 'newer than its server server1' in out
    assert lab.version('server1') == lab.version('client1') == build_lab.NEW_VERSION
    assert lab.version('client2') == build_lab.OLD_VERSION
    assert lab.journal('client2') == []
    assert {name: os.path.getmtime(os.path.join(journal, name)) for name in os.listdir(journal)} == before
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['client2']['result'] == 'refused' and 'newer than its server server1' in report['client2']['message']
    assert report['server1']['result'] == report['client1']['result'] == 'upgraded'


BROKEN_DS = '''import sys
print('PMOD DICOM server: cannot start, this release is broken', flush=True)
sys.exit(3)
'''


def c_echo(lab):
    """One C-ECHO to the lab's DICOM server, no retries: its outcome and reason."""
    from ansible_collections.clinops.upgrade.plugins.module_utils import dicom  # pylint: disable=import-outside-toplevel
    dicom.quiet_pynetdicom()
    peer = dict(dicom.DEFAULTS, host='127.0.0.1', port=int(lab.server['pmod_ports']['dicom']),
                called_aet=lab.server['pmod_dicom_aet'], tls=None, connect_timeout=5, acse_timeout=5, dimse_timeout=5)
    result = dicom.run_peer(peer)
    return result['outcome'], result['reason']


def test_dicom_server_that_does_not_come_up_rolls_back_then_an_immediate_rerun_succeeds(lab):
    """Issue #11: the new release's DICOM program dies at start -> rollback; an immediate rerun with a good release
    must pass preflight (its C-ECHO) and upgrade. The lab's DICOM server has 4 association slots and a 30 s ACSE
    timeout: bare port probes every 0.1 s while a service starts used to fill them, and the rerun's C-ECHO was
    rejected-transient (local limit exceeded)."""
    files = build_lab.release_files(build_lab.NEW_VERSION)
    files['bin/pmod_ds.py'] = (BROKEN_DS.encode(), 0o755)
    build_lab.make_release(lab.root, build_lab.NEW_VERSION, files=files)
    result = lab.run()
    assert result.rc != 0
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'rolled_back', report['server1']
    assert 'pmod-ds' in report['server1']['message']
    assert lab.version('server1') == build_lab.OLD_VERSION
    assert lab.journal()[-1]['result'] == 'rolled_back'

    build_lab.make_release(lab.root, build_lab.NEW_VERSION)  # the fixed release, and at once the rerun
    result = lab.run()
    assert result.rc == 0, result
    echoes = [t['hosts']['server1'] for t in result.tasks
              if t['task']['name'].endswith('Check that the DICOM nodes answer a C-ECHO')
              and not t['hosts'].get('server1', {'skipped': True}).get('skipped')]
    assert echoes, 'the rerun did not C-ECHO the DICOM server in preflight'
    assert [r['outcome'] for r in echoes[0]['results']] == ['success'], echoes[0]  # preflight's
    for host in lab.hosts:
        assert lab.version(host) == build_lab.NEW_VERSION
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'upgraded'
    assert c_echo(lab) == ('success', None)
