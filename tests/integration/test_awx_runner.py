"""The jobs of awx/configure.yml run the way AWX runs them: with ansible-runner, in private data directories.

No AWX server runs here; what AWX does around ansible-runner is done by this module the way AWX does it:

- the project: a copy of the site repository's files (upgrade.yml, ansible.cfg, collections/requirements.yml) and
  nothing else - no roles, no link to this checkout;
- the project update: ``ansible-galaxy collection install -r collections/requirements.yml`` into the private data
  directory's ``requirements_collections`` (AWX puts that folder first on the job's collections path); the project's
  requirements name the collection by the tarball ``ansible-galaxy collection build`` made, as a site pins a release
  its CI built; the other collections are those of the pinned ``ansible`` package, as in an execution environment;
- the inventory: an executable script in ``inventory/`` printing AWX's inventory JSON, built like AWX's
  ``Inventory.get_script_data(slice_number, slice_count)``: hosts sorted by name, a slice takes every
  ``slice_count``-th host from ``slice_number``; every group keeps its variables, but only the slice's hosts and their
  host variables are in it - a client's server may be missing from its slice altogether;
- the survey's answers as ``env/extravars``, ``--check`` for a check job, the template's limit.

One lab (1 server, 4 clients) for the module. First the plan (a check job, nothing changes), a slice of the clients'
job launched too early (held back), then the servers job, then the clients job as two slices (two separate runs):
every host upgraded, the servers first.
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ansible_runner = pytest.importorskip('ansible_runner')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error

BIN = os.path.dirname(sys.executable)
HOSTS = ['client1', 'client2', 'client3', 'client4', 'server1']
# the workflow's survey answers (awx/configure.yml's survey), and what AWX adds to every job's extra vars
SURVEY = {'upgrade_target_version': build_lab.NEW_VERSION, 'upgrade_profile': 'pmod',
          'upgrade_client_serial': '50%', 'upgrade_client_max_fail_percentage': 0}


def awx_script_data(export, slice_number=1, slice_count=1):
    """AWX's inventory JSON for a job (or one slice of a sliced job) from ``ansible-inventory --list --export``."""
    hostvars = export['_meta']['hostvars']
    names = set(hostvars)
    for group, info in export.items():
        if group != '_meta':
            names.update(info.get('hosts', []))
    hosts = sorted(names)
    if slice_count > 1:
        hosts = hosts[slice_number - 1::slice_count]
    data = {'_meta': {'hostvars': {h: hostvars.get(h, {}) for h in hosts}}}
    for group, info in export.items():
        if group == '_meta':
            continue
        entry = {}
        members = [h for h in info.get('hosts', []) if h in hosts]
        if members:
            entry['hosts'] = members
        if info.get('children'):
            entry['children'] = info['children']
        if info.get('vars'):
            entry['vars'] = info['vars']
        if entry:                                  # AWX leaves empty groups out (they stay children of all)
            data[group] = entry
    return data


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp('dist')
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(out), ROOT],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = glob.glob(str(out / '*.tar.gz'))
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('awx') / 'lab')
    inventory = build_lab.build(root, clients=4, servers=1, rows=300, quiet=True)
    try:
        proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', inventory, '--list', '--export'],
                              capture_output=True, text=True, check=True, timeout=120)
        yield {'root': root, 'export': json.loads(proc.stdout)}
    finally:
        build_lab.teardown(root, quiet=True)


class Job:
    """One AWX job: its private data directory, the ansible-runner run, and what it left in artifacts/<ident>."""

    def __init__(self, base, tarball, export, ident, limit, check=False, slice_number=1, slice_count=1):
        self.ident = ident
        self.pdd = os.path.join(str(base), ident)
        self.project = os.path.join(self.pdd, 'project')
        self.collections = os.path.join(self.pdd, 'requirements_collections')
        os.makedirs(os.path.join(self.project, 'collections'))
        os.makedirs(os.path.join(self.pdd, 'inventory'))
        os.makedirs(os.path.join(self.pdd, 'env'))
        for name in ('upgrade.yml', 'ansible.cfg'):
            shutil.copy(os.path.join(ROOT, name), self.project)
        with open(os.path.join(ROOT, 'collections', 'requirements.yml'), encoding='utf-8') as handle:
            requirements = yaml.safe_load(handle)
        pinned = [entry for entry in requirements['collections'] if entry['name'] == 'clinops.upgrade']
        assert len(pinned) == 1, requirements
        pinned[0].clear()
        pinned[0].update({'name': tarball, 'type': 'file'})
        with open(os.path.join(self.project, 'collections', 'requirements.yml'), 'w', encoding='utf-8') as handle:
            yaml.safe_dump(requirements, handle, sort_keys=False)
        self.inventory = awx_script_data(export, slice_number, slice_count)
        script = os.path.join(self.pdd, 'inventory', 'hosts')
        with open(script, 'w', encoding='utf-8') as handle:
            handle.write('#!%s\nprint(%r)\n' % (sys.executable, json.dumps(self.inventory)))
        os.chmod(script, 0o700)
        extravars = dict(SURVEY, awx_job_id=len(ident), awx_job_template_name='clinops upgrade lab - %s' % ident,
                         awx_job_slice_number=slice_number, awx_job_slice_count=slice_count)
        with open(os.path.join(self.pdd, 'env', 'extravars'), 'w', encoding='utf-8') as handle:
            json.dump(extravars, handle)
        self.envvars = {
            # the job's collections: the project update's install first, then the execution environment's (the pinned
            # ansible package); never this checkout
            'ANSIBLE_COLLECTIONS_PATH': self.collections,
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'true',
            'ANSIBLE_FORCE_COLOR': 'false',
            'ANSIBLE_LOCAL_TEMP': os.path.join(self.pdd, 'tmp'),
            'PATH': BIN + os.pathsep + os.environ.get('PATH', ''),
        }
        self.limit = limit
        self.check = check
        self.runner = None

    def project_update(self):
        """What AWX's project update does with collections/requirements.yml."""
        proc = subprocess.run(
            [os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '-r',
             os.path.join(self.project, 'collections', 'requirements.yml'), '-p', self.collections],
            capture_output=True, text=True, check=False, timeout=300, cwd=self.project,
            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='true'))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        installed = os.path.join(self.collections, 'ansible_collections', 'clinops', 'upgrade')
        assert os.path.isdir(installed) and not os.path.islink(installed)
        assert os.path.isfile(os.path.join(installed, 'MANIFEST.json'))
        assert not os.path.exists(os.path.join(installed, 'tests'))

    def run(self):
        self.project_update()
        self.runner = ansible_runner.run(
            private_data_dir=self.pdd, project_dir=self.project, playbook='upgrade.yml', ident=self.ident,
            limit=self.limit, cmdline='--check' if self.check else None, envvars=self.envvars, quiet=True,
            timeout=900)
        return self

    def events(self):
        found = []
        for path in glob.glob(os.path.join(self.pdd, 'artifacts', self.ident, 'job_events', '*.json')):
            with open(path, encoding='utf-8') as handle:
                found.append(json.load(handle))
        return sorted(found, key=lambda e: e['counter'])

    def task_results(self, task, host):
        """The results of the tasks whose name starts with ``task`` that ran (not skipped) on ``host``."""
        return [e['event_data']['res'] for e in self.events()
                if e['event'] == 'runner_on_ok' and e['event_data'].get('host') == host
                and e['event_data'].get('task', '').startswith(task)]

    def explain(self):
        failed = [e for e in self.events() if e['event'] in ('runner_on_failed', 'runner_on_unreachable')]
        return '%s status=%s rc=%s failed=%s\n%s' % (
            self.ident, self.runner.status, self.runner.rc,
            json.dumps([e['event_data'].get('res') for e in failed])[-3000:], self.runner.stdout.read()[-3000:])

    def stats_event(self):
        stats = [e for e in self.events() if e['event'] == 'playbook_on_stats']
        assert len(stats) == 1, self.explain()
        return stats[0]['event_data']

    def report(self):
        """The set_stats artifacts (what AWX keeps as the job's artifacts) and the report file they point to."""
        artifacts = self.stats_event()['artifact_data']
        summary = artifacts['upgrade_report']
        with open(summary['json'], encoding='utf-8') as handle:
            return summary, json.load(handle)

    def assert_clean(self):
        assert self.runner.status == 'successful' and self.runner.rc == 0, self.explain()
        names = {e['event'] for e in self.events()}
        assert {'playbook_on_start', 'playbook_on_stats'} <= names, names
        assert not names & {'runner_on_failed', 'runner_on_unreachable'}, self.explain()
        # ansible-runner's own record of the job, as AWX reads it
        with open(os.path.join(self.pdd, 'artifacts', self.ident, 'status'), encoding='utf-8') as handle:
            assert handle.read().strip() == 'successful'
        with open(os.path.join(self.pdd, 'artifacts', self.ident, 'rc'), encoding='utf-8') as handle:
            assert handle.read().strip() == '0'


def version(lab, host):
    with open(os.path.join(lab['root'], 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
        return handle.read().strip()


def journal(lab, host):
    with open(os.path.join(lab['root'], 'hosts', host, 'state', 'journal.jsonl'), encoding='utf-8') as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_slices_are_built_like_awx(lab):
    """The slice inventories this module hands to ansible-runner: AWX's split, with and without the server."""
    first, second = awx_script_data(lab['export'], 1, 2), awx_script_data(lab['export'], 2, 2)
    assert sorted(first['_meta']['hostvars']) == ['client1', 'client3', 'server1']
    assert sorted(second['_meta']['hostvars']) == ['client2', 'client4']
    assert 'servers' not in second                                # no server, not even its variables
    assert second['clients']['hosts'] == ['client2', 'client4']
    assert second['all']['vars']['upgrade_target_version'] == build_lab.NEW_VERSION   # group variables stay
    # what lets a client of the second slice reach its server: its own variables
    assert second['_meta']['hostvars']['client2']['upgrade_server'] == 'server1'
    assert second['_meta']['hostvars']['client2']['pmod_server_ports'] == first['_meta']['hostvars']['server1']['pmod_ports']


def test_plan_servers_then_sliced_clients(lab, tarball, tmp_path):
    """The workflow's job templates one after the other, each its own ansible-runner run."""
    # the plan: a check job over the whole site; nothing changes
    plan = Job(tmp_path, tarball, lab['export'], 'plan', 'servers:clients', check=True).run()
    plan.assert_clean()
    summary, report = plan.report()
    assert summary['check_mode'] is True and summary['failed_hosts'] == []
    assert summary['run_id'] == report['run_id'] and os.path.basename(summary['json']).startswith('upgrade-%s' % summary['run_id'])
    assert sorted(h['host'] for h in report['hosts']) == HOSTS
    assert {h['result'] for h in report['hosts']} == {'planned'}
    assert [version(lab, h) for h in HOSTS] == [build_lab.OLD_VERSION] * len(HOSTS)
    assert not any(os.path.exists(os.path.join(lab['root'], 'hosts', h, 'state', 'journal.jsonl')) and
                   any(e['step'] == 'stage' for e in journal(lab, h)) for h in HOSTS)
    stats = plan.stats_event()
    assert sorted(stats['processed']) == HOSTS and not stats['failures'] and not stats['dark']

    # the clients' second slice launched too early (before the servers job): its clients ask their server, which
    # answers the old version, so they are held back and nothing of theirs changes
    early = Job(tmp_path, tarball, lab['export'], 'clients-early-slice2', 'clients', slice_number=2, slice_count=2).run()
    early.assert_clean()
    summary, report = early.report()
    assert sorted((h['host'], h['result']) for h in report['hosts']) == [('client2', 'held_back'), ('client4', 'held_back')]
    assert all('runs %s' % build_lab.OLD_VERSION in h['message'] for h in report['hosts']), report['hosts']
    assert [version(lab, h) for h in HOSTS] == [build_lab.OLD_VERSION] * len(HOSTS)
    assert not early.stats_event()['changed']

    # the servers job (not sliced: the whole inventory, limited to the servers)
    servers = Job(tmp_path, tarball, lab['export'], 'servers', 'servers').run()
    servers.assert_clean()
    summary, report = servers.report()
    assert summary['check_mode'] is False and summary['failed_hosts'] == []
    assert [(h['host'], h['result']) for h in report['hosts']] == [('server1', 'upgraded')]
    assert version(lab, 'server1') == build_lab.NEW_VERSION
    assert [version(lab, h) for h in HOSTS[:4]] == [build_lab.OLD_VERSION] * 4

    # the clients job, sliced in two: two separate runs, each with its slice's inventory only
    slices = []
    for number in (1, 2):
        job = Job(tmp_path, tarball, lab['export'], 'clients-slice%d' % number, 'clients', slice_number=number,
                  slice_count=2).run()
        job.assert_clean()
        slices.append(job)
    assert 'server1' not in slices[1].inventory['_meta']['hostvars']      # the second slice never saw its server
    upgraded = {}
    for job, expected in zip(slices, (['client1', 'client3'], ['client2', 'client4'])):
        summary, report = job.report()
        assert summary['failed_hosts'] == [] and summary['run_id'] == report['run_id']
        assert sorted(h['host'] for h in report['hosts']) == expected
        upgraded.update({h['host']: h['result'] for h in report['hosts']})
        assert sorted(job.stats_event()['changed']) == expected          # every client of the slice changed
    assert upgraded == {h: 'upgraded' for h in HOSTS[:4]}
    # how each slice learnt its server's result: both asked the server (Echo TS from the client); only the first
    # slice, whose inventory holds the server, could also read the server's journal on the server
    for job, client, journal_read in ((slices[0], 'client1', True), (slices[1], 'client2', False)):
        asked = job.task_results('Ask the server which version it runs', client)
        assert [r['stdout'].split()[:3] for r in asked] == [['OK', 'PMOD-TS', build_lab.NEW_VERSION]], asked
        assert bool(job.task_results("Read the server's journal on the server", client)) is journal_read
    assert [version(lab, h) for h in HOSTS] == [build_lab.NEW_VERSION] * len(HOSTS)

    # servers first: the server's upgrade had finished before any client's started (the hosts' own journals)
    server_done = max(e['ended'] for e in journal(lab, 'server1') if e['step'] == 'finish' and e['result'] == 'upgraded')
    for client in HOSTS[:4]:
        entries = journal(lab, client)
        first_step = min(e['started'] for e in entries if e['step'] == 'stage')
        assert server_done < first_step, (client, server_done, first_step)
        assert entries[-1]['step'] == 'finish' and entries[-1]['result'] == 'upgraded', entries[-1]
