"""Profiles checked against profiles/schema.json: on the lab through playbooks/upgrade.yml, and the schema itself.

The playbook tests build a small lab (lab/build_lab.py: real supervisord, pynetdicom, SQLite) in a temporary folder and
tear it down.  A broken profile, or a draft that the run does not accept, must stop the run before any host is touched:
the lab's files (hashed), the supervisord processes and the journal are read back unchanged.
"""
import glob
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}
SCHEMA = os.path.join(ROOT, 'profiles', 'schema.json')
PMOD = os.path.join(ROOT, 'profiles', 'pmod.yml')
# the Python code that reads the profile itself (the rest gets profile values as module arguments; window.py reads the
# window and the schedule, combined with the inventory's, through the filters upgrade_window and upgrade_schedule)
PROFILE_READERS = ('plugins/plugin_utils/profile.py', 'plugins/action/upgrade_profile.py', 'plugins/module_utils/window.py')
DRAFT_MESSAGE = ('status: the profile pmod is a draft (not tested end to end); '
                 'set upgrade_profile_accept_draft: true to run it anyway')


def load_schema():
    with open(SCHEMA, encoding='utf-8') as handle:
        return json.load(handle)


def schema_keys(node, prefix='', parent='upgrade_profile_data', passed_to=None):
    """(dotted path, key, parent key, schema, module file the key is passed to) for every key of the schema."""
    found = []
    for key, sub in node.get('properties', {}).items():
        found.append((prefix + key, key, parent, sub, passed_to))
        if sub.get('type') == 'object':
            found.extend(schema_keys(sub, prefix + key + '.', key, sub.get('x-passed-to', passed_to)))
        elif sub.get('type') == 'array' and isinstance(sub.get('items'), dict) and sub['items'].get('type') == 'object':
            items = sub['items']
            found.extend(schema_keys(items, prefix + key + '[].', None, items.get('x-passed-to', passed_to)))
    return found


def read(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def code_texts():
    """What the roles, the playbooks and the plugins say (the documentation stub of upgrade_profile excluded)."""
    files = []
    for pattern in ('roles/**/*.yml', 'roles/**/*.j2', 'playbooks/**/*.yml', 'plugins/**/*.py'):
        files.extend(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return {os.path.relpath(f, ROOT): read(f) for f in files if not f.endswith(os.path.join('modules', 'upgrade_profile.py'))}


def referenced(key, parent, passed_to, texts):
    """Whether code reads ``key``: the module it is passed to declares it, or a role/plugin reads it from its parent."""
    if passed_to and re.search(r'\b%s=dict\(' % re.escape(key), texts[passed_to]):
        return True
    if parent is None or passed_to:  # a key of list items read through a loop variable: <item>.key
        pattern = re.compile(r'\.%s\b' % re.escape(key))
        return any(pattern.search(t) for f, t in texts.items() if not f.endswith('.py'))
    jinja = re.compile(r'%s[^.\n]{0,40}\.%s\b' % (re.escape(parent), re.escape(key)))
    python = re.compile(r"\[%s\]|\.get\(%s\)" % ((re.escape(repr(key)),) * 2))
    return (any(jinja.search(t) for f, t in texts.items() if not f.endswith('.py'))
            or any(python.search(texts[f]) for f in PROFILE_READERS))


def test_every_schema_key_is_read_by_code_or_marked_informational():
    texts = code_texts()
    unread = [path for path, key, parent, sub, passed_to in schema_keys(load_schema())
              if not sub.get('x-informational') and not referenced(key, parent, passed_to, texts)]
    assert unread == []


def test_the_reference_check_catches_a_key_nothing_reads():
    texts = code_texts()
    assert not referenced('blocks', 'version', None, texts)
    assert not referenced('order', 'compatibility', None, texts)
    assert not referenced('mirror', 'artifact', None, texts)
    assert referenced('channel', 'artifact', None, texts)      # read by the role upgrade (release_pick)
    assert not referenced('oracle_sid', 'connection', 'plugins/module_utils/database.py', texts)
    assert referenced('major_blocks', 'version', None, texts)
    assert referenced('login_unix_socket', 'connection', 'plugins/module_utils/database.py', texts)


def test_informational_keys_say_so_in_their_description():
    for path, _key, _parent, sub, _passed in schema_keys(load_schema()):
        if sub.get('x-informational'):
            assert 'Not used yet by the roles' in sub['description'], path


def test_the_docs_key_table_is_the_one_generated_from_the_schema(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'profile_docs.py'), '--check'],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    table = read(os.path.join(ROOT, 'docs', 'PROFILES.md'))
    for path, _key, _parent, _sub, _passed in schema_keys(load_schema()):
        assert '| `%s` |' % path in table


def test_the_docs_check_fails_on_a_stale_table(tmp_path):
    # a copy of the tool, the schema and the docs, with one description changed in the schema
    for sub in ('tools', 'profiles', 'docs', 'plugins/plugin_utils'):
        os.makedirs(tmp_path / sub, exist_ok=True)
    for rel in ('tools/profile_docs.py', 'docs/PROFILES.md', 'plugins/plugin_utils/profile.py'):
        (tmp_path / rel).write_text(read(os.path.join(ROOT, rel)), encoding='utf-8')
    schema = load_schema()
    schema['properties']['verify_wait']['description'] = 'Changed.'
    (tmp_path / 'profiles' / 'schema.json').write_text(json.dumps(schema), encoding='utf-8')
    tool = str(tmp_path / 'tools' / 'profile_docs.py')
    proc = subprocess.run([sys.executable, tool, '--check'], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert 'run make docs' in proc.stderr
    subprocess.run([sys.executable, tool], check=True)
    assert '| `verify_wait` | int | >= 0 | `60` | Changed. |' in (tmp_path / 'docs' / 'PROFILES.md').read_text(encoding='utf-8')
    assert subprocess.run([sys.executable, tool, '--check'], check=False).returncode == 0


# --------------------------------------------------------------------------------------------------
# on the lab

class Lab:
    def __init__(self, root, inventory):
        self.root = root
        self.inventory = inventory
        with open(inventory, encoding='utf-8') as handle:
            handle.readline()
            self.inv = json.load(handle)
        self.server = self.inv['all']['children']['servers']['hosts']['server1']

    def set_var(self, key, value):
        self.inv['all']['vars'][key] = value
        with open(self.inventory, 'w', encoding='utf-8') as handle:
            json.dump(self.inv, handle)

    def profile_file(self, **changes):
        """A copy of pmod.yml with top-level ``changes`` and nested ones written 'a__b'; None deletes."""
        with open(PMOD, encoding='utf-8') as handle:
            data = yaml.safe_load(handle)
        for dotted, value in changes.items():
            parts = [int(p) if p.isdigit() else p for p in dotted.split('__')]
            node = data
            for part in parts[:-1]:
                node = node[part]
            if value is None:
                del node[parts[-1]]
            else:
                node[parts[-1]] = value
        path = os.path.join(self.root, 'profile-under-test.yml')
        with open(path, 'w', encoding='utf-8') as handle:
            yaml.safe_dump(data, handle, sort_keys=False, allow_unicode=True)
        return path

    def tree_hash(self):
        digest = {}
        for base, dirs, files in os.walk(self.root):
            rel = os.path.relpath(base, self.root)
            dirs[:] = sorted(d for d in dirs if d not in ('logs', 'supervisor', 'reports', '__pycache__'))
            for name in sorted(files):
                with open(os.path.join(base, name), 'rb') as handle:
                    digest[os.path.join(rel, name)] = hashlib.sha256(handle.read()).hexdigest()
        return digest

    def supervisor_pids(self):
        out = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c',
                              self.server['upgrade_supervisor_config'], 'pid', 'all'], capture_output=True, text=True, check=False)
        return out.stdout.split()

    def journals(self):
        return sorted(glob.glob(os.path.join(self.root, 'hosts', '*', 'state', '*')))

    def reports(self):
        folder = os.path.join(self.root, 'reports')
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []

    def report(self):
        folder = os.path.join(self.root, 'reports')
        name = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))[-1][1]
        with open(os.path.join(folder, name), encoding='utf-8') as handle:
            return json.load(handle), os.path.join(folder, name)

    def run(self, check=False, **kwargs):
        return run_playbook(PLAYBOOK, inventory=self.inventory, check=check, env=ENV, timeout=900, **kwargs)


@pytest.fixture
def lab(tmp_path):
    root = str(tmp_path / 'lab')
    inventory = build_lab.build(root, clients=1, servers=1, rows=200, quiet=True)
    yield Lab(root, inventory)
    build_lab.teardown(root, quiet=True)


def refusal(result):
    """The upgrade_profile failure of the run (the first host's), and every message the run printed."""
    failures = [(host, res) for task in result.tasks if task['task']['name'].endswith("Check the profile against the collection's schema")
                for host, res in task['hosts'].items() if res.get('failed')]
    assert failures, result
    return failures[0][1]


BROKEN_PROBLEMS = [
    'database.backup_befor: unknown key; did you mean backup_before?',
    "services[2].backend: 'sytemd' is not one of auto, systemd, sysvinit, supervisor, script, windows",
    'verify_wait: expected integer, got string',
]


@pytest.mark.parametrize('check', [False, True], ids=['run', 'check_mode'])
def test_a_broken_profile_stops_the_run_before_any_host_is_touched(lab, check):
    lab.set_var('upgrade_profile_file', lab.profile_file(database__backup_befor=True, services__2__backend='sytemd',
                                                         verify_wait='sixty'))
    pids, tree = lab.supervisor_pids(), lab.tree_hash()
    result = lab.run(check=check)
    assert result.rc != 0
    failed = refusal(result)
    assert failed['problems'] == BROKEN_PROBLEMS
    assert 'has 3 problems, nothing was touched' in failed['msg']
    # no later task ran on any host: the run ended in the preflight play's first task
    names = [t['task']['name'] for t in result.tasks]
    assert 'Read the installed version' not in ' '.join(names)
    assert all(not res.get('changed') for t in result.tasks for res in t['hosts'].values())
    assert lab.supervisor_pids() == pids and len(pids) == 3
    assert lab.tree_hash() == tree
    assert lab.journals() == []


def test_a_typo_in_the_overrides_is_refused_like_one_in_the_file(lab):
    lab.set_var('upgrade_profile_overrides', {'database': {'backup_kep': 7}, 'services': [{'name': 'pmod-xx', 'state': 'absent'}]})
    tree = lab.tree_hash()
    result = lab.run(check=True)
    assert result.rc != 0
    assert refusal(result)['problems'] == [
        "upgrade_profile_overrides.services[0]: name 'pmod-xx' is removed but the profile has no such entry",
        'database.backup_kep: unknown key; did you mean backup_keep?']
    assert lab.tree_hash() == tree


def test_a_draft_is_refused_then_accepted_with_the_flag_and_the_report_names_it(lab):
    lab.set_var('upgrade_profile_file', lab.profile_file(status='draft'))
    tree = lab.tree_hash()
    refused = lab.run(check=True)
    assert refused.rc != 0
    assert refusal(refused)['problems'] == [DRAFT_MESSAGE]
    assert lab.tree_hash() == tree
    assert lab.reports() == []

    lab.set_var('upgrade_profile_accept_draft', True)
    tree = lab.tree_hash()
    accepted = lab.run(check=True)
    assert accepted.rc == 0, accepted
    report, path = lab.report()
    assert report['profile'] == 'pmod' and report['profile_status'] == 'draft' and report['product'] == 'PMOD'
    assert report['check_mode'] is True
    with open(path[:-len('.json')] + '.md', encoding='utf-8') as handle:
        assert 'Profile `pmod` (draft)' in handle.read()
    with open(path[:-len('.json')] + '.html', encoding='utf-8') as handle:
        assert 'profile <code>pmod</code> (draft)' in handle.read()
    assert lab.tree_hash() == tree  # check mode


def test_overrides_merge_by_name_on_the_hosts(lab):
    """The per-host profile data gets the same by-name merge the check validated: one service's timeout changed."""
    lab.set_var('upgrade_profile_overrides', {'services': [{'name': 'pmod-ts', 'timeout': 45}],
                                              'health_checks': {'server': [{'name': 'Echo DB', 'state': 'absent'}]}})
    play = [{'hosts': 'server1', 'gather_facts': False, 'tasks': [
        {'name': 'Load', 'ansible.builtin.include_role': {'name': 'clinops.upgrade.upgrade', 'tasks_from': 'profile.yml'}},
        {'name': 'Show', 'ansible.builtin.debug': {'msg': {
            'services': "{{ upgrade_profile_data.services | map(attribute='name') | list }}",
            'timeouts': "{{ upgrade_profile_data.services | map(attribute='timeout') | list }}",
            'checks': "{{ upgrade_profile_data.health_checks.server | map(attribute='name') | list }}",
            'port': "{{ upgrade_profile_data.services[1].port }}",
            'connection_keys': "{{ upgrade_profile_data.database.connection.keys() | sort }}"}}},
    ]}]
    result = run_playbook(play, inventory=lab.inventory, env=ENV)
    assert result.rc == 0, result
    shown = result.result('Show', host='server1')['msg']
    assert shown['services'] == ['pmod-ds', 'pmod-ts', 'pmod-ls']
    assert shown['timeouts'] == [30, 45, 30]
    assert shown['checks'] == ['Echo TS', 'C-ECHO to the DICOM server']
    assert int(shown['port']) == lab.server['pmod_ports']['ts']
    assert shown['connection_keys'] == ['engine', 'path']  # the omitted keys stay omitted
