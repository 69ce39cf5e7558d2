"""The real playbooks/upgrade.yml over a lab whose hosts are marked Windows (issue #12: the roles on Windows hosts).

No Windows host runs here. As in test_windows_site.py, the lab's server and two clients are marked
``clinops_upgrade_host_os: windows``: the collection's action plugins (upgrade_host_state, upgrade_journal,
upgrade_cutover) then run their Python on the controller and carry out every host operation with ``ansible.windows``
modules, which the test doubles in ``tests/integration/doubles`` (first in ANSIBLE_COLLECTIONS_PATH) act out on the
lab's folders and supervisor programs, refusing any option the real module does not document. The network checks
run from the controller (delegate_to: localhost).

The module_count callback proves that no POSIX module reached a host: every module executed for server1, client1 and
client2 is an ``ansible.windows`` one. One lab for the whole module. The database steps are not carried out on the
Windows path yet (the Windows engine refuses them), so the site's profile here is PMOD's without migrations and the
run sets ``server_upgrade_backup: false``.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from harness import COLLECTIONS, ansible_env, module_count_env, run_playbook, run_task
from labtools import ENV, PLAYBOOK, ROOT, Lab
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error,wrong-import-order
from test_windows_site import DOUBLES, c_echo, zip_release  # pylint: disable=wrong-import-position

OLD, NEW = build_lab.OLD_VERSION, build_lab.NEW_VERSION


def zip_with_checksum(lab, version):
    path = zip_release(lab, version)
    with open(path, 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with open(path + '.sha256', 'w', encoding='ascii') as handle:
        handle.write('%s  %s\n' % (digest, os.path.basename(path)))
    return path


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp('winplay')
    root = str(base / 'lab')
    inventory = build_lab.build(root, clients=2, servers=1, rows=200, quiet=True)
    lab = Lab(root, inventory)
    try:
        services = os.path.join(root, 'windows-services.json')
        with open(services, 'w', encoding='utf-8') as handle:
            json.dump(dict((name, lab.server['upgrade_supervisor_config']) for name in ('pmod-ts', 'pmod-ls', 'pmod-ds')), handle)
        with open(os.path.join(ROOT, 'profiles', 'pmod.yml'), encoding='utf-8') as handle:
            profile = yaml.safe_load(handle)
        profile['artifact'].update(file='pmod-{version}.zip', checksum_file='pmod-{version}.zip.sha256')
        profile.pop('migrations', None)  # no database step on the Windows path yet
        # ... so the schema stays where it was, and the check that the schema reached the release's is left out
        profile['health_checks']['server'] = [c for c in profile['health_checks']['server'] if c['name'] != 'Echo DB']
        profile_file = str(base / 'pmod-windows.yml')
        with open(profile_file, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(profile, handle, sort_keys=False)
        for version in (OLD, NEW):
            zip_with_checksum(lab, version)
        lab.set_var('clinops_upgrade_host_os', 'windows')
        lab.set_var('upgrade_profile_file', profile_file)
        lab.set_var('server_upgrade_backup', False)
        lab.env = dict(ENV, ANSIBLE_COLLECTIONS_PATH=DOUBLES + os.pathsep + COLLECTIONS, CLINOPS_WIN_DOUBLE_SERVICES=services,
                       ANSIBLE_PIPELINING='true')
        lab.base = base
        yield lab
    finally:
        build_lab.teardown(root, quiet=True)


def test_an_inventory_of_winrm_hosts_passes_the_syntax_check(site):
    inventory = {'all': {'vars': {'ansible_connection': 'winrm', 'ansible_winrm_transport': 'ntlm', 'ansible_port': 5986},
                         'children': {'servers': {'hosts': {'pmod-srv.example.invalid': {}}},
                                      'clients': {'hosts': {'ws001.example.invalid': {'upgrade_server': 'pmod-srv.example.invalid'}}}}}}
    path = str(site.base / 'winrm.yml')
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(inventory, handle)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', path, PLAYBOOK, '--syntax-check'],
                          capture_output=True, text=True, env=ansible_env(site.env), cwd=ROOT, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'ERROR' not in proc.stderr


def host_files(lab):
    """sha256 of every file in the hosts' folders (installation, state, backups), supervisord's runtime files aside."""
    return dict((path, digest) for path, digest in lab.tree_hash().items() if path.startswith('hosts' + os.sep))


def test_check_mode_over_the_windows_hosts_plans_and_changes_nothing(site):
    before_files, before_pids, before_dump = host_files(site), site.supervisor_pids(), site.dump()
    counts = str(site.base / 'check-counts.json')
    result = run_playbook(PLAYBOOK, inventory=site.inventory, check=True, env=dict(site.env, **module_count_env(counts)), timeout=1200)
    assert result.rc == 0, result
    with open(counts + '.modules.json', encoding='utf-8') as handle:
        modules = json.load(handle)
    for host in site.hosts:  # the hosts were read through the doubles, and only through ansible.windows modules
        assert modules[host] and all(name.startswith('ansible.windows.') for name in modules[host]), (host, modules[host])
    # nothing moved: every file of every host's folders, the services' processes, the database
    assert host_files(site) == before_files
    assert site.supervisor_pids() == before_pids and set(site.supervisor_states().values()) == {'RUNNING'}
    assert site.dump() == before_dump
    for host in site.hosts:
        assert site.version(host) == OLD and site.journal(host) == [], host
        state = os.path.join(site.root, 'hosts', host, 'state')
        assert not os.path.exists(os.path.join(state, 'upgrade.lock')), host
        assert not os.path.exists(site.install(host) + '_staging') and not os.path.exists(site.install(host) + '_old0001')
    assert not [n for n in os.listdir(os.path.dirname(site.db)) if 'backup' in n.lower()]
    # the plan per host, as the POSIX --check gives it
    plan = {h['host']: h for h in site.report()['hosts']}
    assert {h: plan[h]['result'] for h in site.hosts} == dict.fromkeys(site.hosts, 'planned'), plan
    assert plan['server1']['plan']['stop_order'] == ['pmod-ds', 'pmod-ts', 'pmod-ls'], plan['server1']['plan']
    for host in site.hosts:
        assert plan[host]['from_version'] == OLD and plan[host]['to_version'] == NEW, plan[host]


def install_files(lab, host):
    """sha256 of every file of the host's installation (settings included; logs and __pycache__ left out)."""
    prefix = os.path.relpath(lab.install(host), lab.root) + os.sep
    return dict((path, digest) for path, digest in lab.tree_hash().items() if path.startswith(prefix))


def test_a_release_whose_service_does_not_start_is_rolled_back_by_the_playbook(site):
    """The real playbook on the Windows-marked site with a release whose transaction server does not even compile
    (supervisord gives up on it, win_service's start fails): the server is rolled back (the old version running and
    verified, its files and the database as before), its clients are held back, the run fails, and every report
    (JSON, Markdown, HTML) names the rollback."""
    files = build_lab.release_files(NEW)
    data, mode = files['bin/pmod_ts.py']
    files['bin/pmod_ts.py'] = (data.replace(b'class Handler(', b'class Handler(:'), mode)
    build_lab.make_release(site.root, NEW, files=files)
    zip_with_checksum(site, NEW)
    before = dict((host, install_files(site, host)) for host in site.hosts)
    before_rows, before_dump, old_pids = site.product_rows(), site.dump(), site.supervisor_pids()
    reports = os.path.join(site.root, 'reports')
    known = set(os.listdir(reports)) if os.path.isdir(reports) else set()

    result = run_playbook(PLAYBOOK, inventory=site.inventory, env=site.env, timeout=1200)
    assert result.rc != 0, result

    # the server: the old version back, running and verified, read back from the lab
    assert site.version('server1') == OLD
    assert set(site.supervisor_states().values()) == {'RUNNING'}
    assert site.supervisor_pids() != old_pids  # really stopped and started again
    assert site.ctl('echo-ts').startswith('OK PMOD-TS %s' % OLD), site.ctl('echo-ts')
    assert c_echo(site)
    assert install_files(site, 'server1') == before['server1']  # program and settings byte for byte
    assert site.product_rows() == before_rows and site.dump() == before_dump
    assert 'PMOD_failed_%s_1' % NEW in os.listdir(os.path.dirname(site.install('server1')))
    last = site.journal('server1')[-1]
    assert last['step'] == 'finish' and last['result'] == 'rolled_back', last
    assert not os.path.exists(os.path.join(site.root, 'hosts', 'server1', 'state', 'upgrade.lock'))
    # the clients: held back, untouched
    for client in site.clients:
        assert site.version(client) == OLD and install_files(site, client) == before[client], client
        assert not [e for e in site.journal(client) if e['step'] == 'swap'], client
    # every report format names the rollback
    report = {h['host']: h for h in site.report()['hosts']}
    assert report['server1']['result'] == 'rolled_back', report['server1']
    assert 'pmod-ts' in report['server1']['message'], report['server1']['message']
    assert {c: report[c]['result'] for c in site.clients} == dict.fromkeys(site.clients, 'held_back')
    written = sorted(set(os.listdir(reports)) - known)
    assert [n.rsplit('.', 1)[1] for n in written] == ['html', 'json', 'md'], written
    base = os.path.join(reports, written[0].rsplit('.', 1)[0])
    with open(base + '.md', encoding='utf-8') as handle:
        markdown = handle.read()
    assert [line for line in markdown.splitlines() if line.startswith('| server1 |') and '| rolled_back |' in line], markdown
    with open(base + '.html', encoding='utf-8') as handle:
        html = handle.read()
    assert 'data-host="server1"' in html and 'badge rolled_back">rolled back<' in html


def test_the_site_is_upgraded_by_the_playbook_through_the_windows_hosts(site):
    build_lab.make_release(site.root, NEW)  # the good release (again, after the rollback test)
    zip_with_checksum(site, NEW)
    counts = str(site.base / 'counts.json')
    result = run_playbook(PLAYBOOK, inventory=site.inventory, env=dict(site.env, **module_count_env(counts)), timeout=1200)
    assert result.rc == 0, result
    for host in site.hosts:
        assert site.version(host) == NEW, host
        run_id = site.journal(host)[-1]['run_id']  # this run's entries (a rolled-back attempt may come before)
        entries = [e for e in site.journal(host) if e['result'] in ('ok', 'upgraded') and e['run_id'] == run_id]
        steps = [e['step'] for e in entries]
        assert steps[0] == 'begin' and steps[-1] == 'finish' and 'swap' in steps, (host, steps)
        assert entries[-1]['result'] == 'upgraded' and len({e['run_id'] for e in entries}) == 1
        assert not os.path.exists(os.path.join(site.root, 'hosts', host, 'state', 'upgrade.lock'))  # released
        assert not os.path.exists(site.install(host) + '_staging')
    assert set(site.supervisor_states().values()) == {'RUNNING'}
    assert site.ctl('echo-ts').startswith('OK PMOD-TS %s' % NEW), site.ctl('echo-ts')
    assert c_echo(site)
    report = {h['host']: h for h in site.report()['hosts']}
    assert {h: report[h]['result'] for h in site.hosts} == dict.fromkeys(site.hosts, 'upgraded')
    # every module that ran for a host was an ansible.windows one: no POSIX task on the host's path
    with open(counts + '.modules.json', encoding='utf-8') as handle:
        modules = json.load(handle)
    for host in site.hosts:
        assert modules[host] and all(name.startswith('ansible.windows.') for name in modules[host]), (host, modules[host])


def test_the_doubles_keep_the_real_modules_check_mode(site):
    """As the real modules: win_command (no check mode support) is skipped; win_powershell skips a script that does not
    declare SupportsShouldProcess and runs one that does; the engine's read-only scripts declare it, the others not."""
    from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import READ_ONLY_SCRIPTS, SCRIPTS  # pylint: disable=import-outside-toplevel
    marker = str(site.base / 'must-not-exist')
    env = dict(site.env)
    skipped = run_task('ansible.windows.win_command', {'argv': ['touch', marker]}, check=True, env=env)
    assert skipped.get('skipped') and 'does not support check mode' in skipped['msg'], skipped
    assert not os.path.exists(marker)
    write = run_task('ansible.windows.win_powershell', {'script': SCRIPTS['write'], 'parameters': {
        'Path': marker, 'Content': 'eA=='}}, check=True, env=env)
    assert write['changed'] and write['msg'] == 'skipped, running in check mode' and not write.get('output'), write
    assert not os.path.exists(marker)
    free = run_task('ansible.windows.win_powershell', {'script': SCRIPTS['free_space'], 'parameters': {'Path': site.root}},
                    check=True, env=env)
    assert not free.get('failed') and free['output'][0]['free'] > 0, free
    assert READ_ONLY_SCRIPTS == {'zip_list', 'free_space', 'clock'}
    assert all(('SupportsShouldProcess' in SCRIPTS[n]) == (n in READ_ONLY_SCRIPTS) for n in SCRIPTS)
