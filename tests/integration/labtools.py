"""The lab (lab/build_lab.py) as the end-to-end and fault tests see it: its hosts, database, services, journal, report."""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if os.path.join(ROOT, 'lab') not in sys.path:     # for the tests' own "import build_lab"
    sys.path.insert(0, os.path.join(ROOT, 'lab'))

from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position
from procs import descendants  # noqa: E402,F401  pylint: disable=wrong-import-position,import-error,unused-import

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}
PRODUCT_TABLES = ('pmod_schema', 'patients', 'studies', 'series', 'legacy_notes')


class Lab:
    def __init__(self, root, inventory):
        self.root = root
        self.inventory = inventory
        with open(inventory, encoding='utf-8') as handle:
            handle.readline()
            self.inv = json.load(handle)
        self.server = self.inv['all']['children']['servers']['hosts']['server1']
        self.db = self.server['upgrade_db_path']
        self.clients = sorted(self.inv['all']['children']['clients']['hosts'])
        self.hosts = ['server1'] + self.clients

    def install(self, host):
        return os.path.join(self.root, 'hosts', host, 'opt', 'PMOD')

    def version(self, host):
        with open(os.path.join(self.install(host), 'VERSION'), encoding='ascii') as handle:
            return handle.read().strip()

    def ctl(self, what, host='server1'):
        inst = self.install(host)
        proc = subprocess.run([sys.executable, os.path.join(inst, 'bin', 'pmodctl.py'), what, '--properties',
                               os.path.join(inst, 'properties', 'Config.properties')], capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    def supervisorctl(self, *args):
        return subprocess.run([os.path.join(os.path.dirname(sys.executable), 'supervisorctl'), '-c',
                               self.server['upgrade_supervisor_config']] + list(args), capture_output=True, text=True, check=False)

    def supervisor_pids(self):
        return self.supervisorctl('pid', 'all').stdout.split()

    def supervisor_states(self):
        """{program: state} as supervisord reports them."""
        return dict(line.split()[:2] for line in self.supervisorctl('status').stdout.splitlines() if line.strip())

    def product_rows(self):
        conn = sqlite3.connect(self.db)
        try:
            rows = {}
            for table in PRODUCT_TABLES:
                cols = [r[1] for r in conn.execute('PRAGMA table_info(%s)' % table)]
                rows[table] = (cols, conn.execute('SELECT * FROM %s ORDER BY 1' % table).fetchall()) if cols else None
            return rows
        finally:
            conn.close()

    def dump(self):
        conn = sqlite3.connect(self.db)
        try:
            return '\n'.join(conn.iterdump())
        finally:
            conn.close()

    def tree_hash(self):
        """sha256 of every file of the lab except logs, supervisord's runtime files and the controller's reports."""
        digest = {}
        for base, dirs, files in os.walk(self.root):
            rel = os.path.relpath(base, self.root)
            dirs[:] = sorted(d for d in dirs if d not in ('logs', 'supervisor', 'reports', '__pycache__'))
            for name in sorted(files):
                path = os.path.join(base, name)
                with open(path, 'rb') as handle:
                    digest[os.path.join(rel, name)] = hashlib.sha256(handle.read()).hexdigest()
        return digest

    def set_host_var(self, group, host, key, value):
        self.inv['all']['children'][group]['hosts'][host][key] = value
        self.write_inventory()

    def set_var(self, key, value):
        self.inv['all']['vars'][key] = value
        self.write_inventory()

    def write_inventory(self):
        with open(self.inventory, 'w', encoding='utf-8') as handle:
            json.dump(self.inv, handle)

    def journal(self, host='server1'):
        path = os.path.join(self.root, 'hosts', host, 'state', 'journal.jsonl')
        if not os.path.exists(path):
            return []
        with open(path, encoding='utf-8') as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def report(self):
        folder = os.path.join(self.root, 'reports')
        names = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))
        with open(os.path.join(folder, names[-1][1]), encoding='utf-8') as handle:
            return json.load(handle)

    def run(self, check=False, **kwargs):
        return run_playbook(PLAYBOOK, inventory=self.inventory, check=check, env=ENV, timeout=1200, **kwargs)


def properties(path):
    with open(path, encoding='iso-8859-1') as handle:
        return dict(line.rstrip('\n').split('=', 1) for line in handle if '=' in line and not line.startswith('#'))
