"""End to end over SSH: playbooks/upgrade.yml on the lab with every host behind its own sshd.

lab/ssh_hosts.py starts one real /usr/sbin/sshd per inventory host, each in its own mount namespace
(private /run), on a free loopback port, with the lab's own host keys, known_hosts and client key.
The tests prove the connections went over SSH (sshd's own log, and the mount namespace the tasks
ran in), that the upgrade still upgrades every host, and that nothing the tests started outlives them.
"""
# pylint: disable=redefined-outer-name
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
import ssh_hosts  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')
ENV = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg')}
HOSTS = ('server1', 'client1', 'client2')
ACCEPTED = re.compile(r'^Accepted publickey for root from 127\.0\.0\.1 port \d+ ssh2: ED25519 ', re.M)
NAMESPACE_PLAY = [{'name': 'where do the tasks run', 'hosts': 'servers:clients', 'gather_facts': False, 'tasks': [
    {'name': 'mount namespace', 'ansible.builtin.command': 'readlink /proc/self/ns/mnt', 'changed_when': False},
    {'name': 'the private /run', 'ansible.builtin.find': {'paths': '/run', 'file_type': 'any'}},
]}]


def lab_processes(root):
    """PIDs of every process of the lab's SSH variant that runs now: the sshd listeners, their session
    processes, and the ssh clients/ControlPersist masters whose ControlPath is in the lab."""
    pids = set(ssh_hosts.sshd_pids(root)) | set(ssh_hosts.master_pids(root))
    for listener in list(pids):
        pids.update(ssh_hosts._descendants(listener))  # pylint: disable=protected-access
    return pids


def processes_naming(*needles):
    """Every live ssh/sshd process whose command line names one of ``needles`` (a /proc scan)."""
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit() or not ssh_hosts.alive(int(name)):
            continue
        try:
            with open('/proc/%s/cmdline' % name, 'rb') as handle:
                line = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            exe = os.path.basename(os.readlink('/proc/%s/exe' % name))
        except OSError:
            continue
        if exe in ('ssh', 'sshd') and any(needle in line for needle in needles):
            found.append((int(name), line))
    return found


class SshLab:
    """A lab under ``root`` (server1, client1, client2) reached over SSH."""

    def __init__(self, root):
        self.root = root
        self.inventory = None
        self.inv = None
        self.seen = set()        # every PID of an sshd / ssh master this test has seen running
        self.closed = None

    def enable(self):
        self.inventory = ssh_hosts.enable(self.root)
        self.note_processes()
        with open(self.inventory, encoding='utf-8') as handle:
            assert handle.readline().startswith('#')
            self.inv = json.load(handle)
        return self.inventory

    def note_processes(self):
        self.seen |= lab_processes(self.root)

    def host_vars(self, host):
        group = 'servers' if host.startswith('server') else 'clients'
        return self.inv['all']['children'][group]['hosts'][host]

    def state(self):
        return ssh_hosts.read_state(self.root)

    def sshd_log(self, host):
        with open(self.state()['hosts'][host]['log'], encoding='utf-8', errors='replace') as handle:
            return handle.read()

    def accepted(self):
        return {host: len(ACCEPTED.findall(self.sshd_log(host))) for host in HOSTS}

    def version(self, host):
        with open(os.path.join(self.root, 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
            return handle.read().strip()

    def report(self):
        folder = os.path.join(self.root, 'reports')
        names = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder) if n.endswith('.json'))
        with open(os.path.join(folder, names[-1][1]), encoding='utf-8') as handle:
            return json.load(handle)

    def run(self, playbook=PLAYBOOK):
        try:
            return run_playbook(playbook, inventory=self.inventory, env=ENV, timeout=1200)
        finally:
            self.note_processes()

    def close(self):
        """ssh_hosts.disable, then build_lab.teardown; return what still runs of what the test started."""
        if self.closed is None:
            self.note_processes()
            try:
                ssh_hosts.disable(self.root)
            finally:
                build_lab.teardown(self.root, quiet=True)
            self.closed = sorted(pid for pid in self.seen if ssh_hosts.alive(pid))
            self.closed += processes_naming(self.root, ssh_hosts.control_dir(self.root))
        return self.closed


@pytest.fixture
def ssh_lab(tmp_path, request):
    lab = SshLab(str(tmp_path / 'lab'))
    build_lab.build(lab.root, clients=2, quiet=True)

    def finalise():
        leftovers = lab.close()
        assert leftovers == [], 'still running after disable and teardown: %r' % leftovers

    request.addfinalizer(finalise)
    lab.enable()
    return lab


def test_upgrade_over_ssh_every_host_in_its_own_mount_namespace(ssh_lab):
    lab = ssh_lab
    state = lab.state()
    listeners = {host: state['hosts'][host]['pid'] for host in HOSTS}
    for host in HOSTS:
        hv = lab.host_vars(host)
        assert hv['ansible_connection'] == 'ssh' and hv['ansible_host'] == '127.0.0.1'
        assert hv['ansible_port'] == state['hosts'][host]['port']
        assert 'StrictHostKeyChecking=yes' in hv['ansible_ssh_common_args']
        assert ssh_hosts.sshd_pids(lab.root)[listeners[host]].endswith(os.path.join(host, 'sshd_config'))
    assert len(set(listeners.values())) == len(HOSTS)
    accepted_before = lab.accepted()
    assert all(count >= 1 for count in accepted_before.values()), accepted_before   # enable's own check

    # every task of the hosts runs in its sshd's mount namespace: not the controller's, one per host
    result = lab.run(NAMESPACE_PLAY)
    assert result.rc == 0, result
    mine = os.readlink('/proc/self/ns/mnt')
    for host in HOSTS:
        namespace = result.result('mount namespace', host)['stdout'].strip()
        assert namespace == os.readlink('/proc/%d/ns/mnt' % listeners[host]) != mine, (host, namespace, mine)
        run_dir = sorted(os.path.basename(f['path']) for f in result.result('the private /run', host)['files'])
        assert run_dir == ['sshd'], (host, run_dir)                            # the tmpfs sshd's namespace got
    assert len({result.result('mount namespace', h)['stdout'] for h in HOSTS}) == len(HOSTS)

    # no ControlPersist master left from that play: every host must log in anew, and its sshd logs it
    ssh_hosts.stop_masters(lab.root)
    assert ssh_hosts.master_pids(lab.root) == []
    accepted_before = lab.accepted()
    result = lab.run()
    assert result.rc == 0, result
    accepted_after = lab.accepted()
    for host in HOSTS:
        assert accepted_after[host] > accepted_before[host], (host, accepted_before, accepted_after)
        assert lab.version(host) == build_lab.NEW_VERSION
    report = {h['host']: h for h in lab.report()['hosts']}
    assert set(HOSTS) <= set(report), report
    for host in HOSTS:
        assert report[host]['result'] == 'upgraded', report[host]
    assert report['server1']['from_version'] == build_lab.OLD_VERSION
    assert report['server1']['to_version'] == build_lab.NEW_VERSION

    result = lab.run()
    assert result.rc == 0, result
    for host in HOSTS + ('localhost',):
        assert result.stats[host]['changed'] == 0, (host, result.stats[host])
    assert lab.report()['nothing_to_do'] is True

    # two ControlPersist masters that never time out: one disable can end with "ssh -O exit", one whose
    # socket is gone, so that only its PID can end it
    lab.note_processes()
    ssh_hosts.stop_masters(lab.root)          # Ansible's: ControlMaster=auto would reuse them
    for host in ('client1', 'client2'):
        sockets = set(os.listdir(os.path.join(lab.root, 'ssh')))
        proc = subprocess.run(ssh_hosts.ssh_command(lab.root, state['hosts'][host]['port'], 'true', master=True),
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    new_sockets = [n for n in set(os.listdir(os.path.join(lab.root, 'ssh'))) - sockets if n.startswith('cm-')]
    assert len(new_sockets) == 1, new_sockets
    os.unlink(os.path.join(lab.root, 'ssh', new_sockets[0]))
    masters = set(ssh_hosts.master_pids(lab.root))
    assert len(masters) == 2, masters
    lab.note_processes()

    seen = set(lab.seen)
    assert masters <= seen
    assert set(listeners.values()) <= seen
    assert lab.close() == []
    assert not any(ssh_hosts.alive(pid) for pid in seen)
    assert not os.path.exists(lab.root)


def test_a_wrong_host_key_is_refused(ssh_lab):
    """StrictHostKeyChecking=yes really applies (lab/ansible.cfg turns host key checking off for Ansible)."""
    lab = ssh_lab
    known = os.path.join(lab.root, 'ssh', 'known_hosts')
    port = lab.state()['hosts']['client2']['port']
    with open(os.path.join(lab.root, 'ssh', 'server1', 'ssh_host_ed25519_key.pub'), encoding='ascii') as handle:
        other_key = ' '.join(handle.read().split()[:2])
    with open(known, encoding='ascii') as handle:
        lines = handle.read().splitlines()
    with open(known, 'w', encoding='ascii') as handle:
        for line in lines:
            handle.write(('[127.0.0.1]:%d %s' % (port, other_key) if line.startswith('[127.0.0.1]:%d ' % port)
                          else line) + '\n')
    result = lab.run(NAMESPACE_PLAY)
    assert result.rc != 0
    assert result.stats['client2']['unreachable'] == 1, result.stats
    assert result.stats['client1']['unreachable'] == 0 and result.stats['server1']['unreachable'] == 0
    assert 'REMOTE HOST IDENTIFICATION HAS CHANGED' in json.dumps(result.data) + result.stderr
    assert len(ACCEPTED.findall(lab.sshd_log('client2'))) == 1       # enable's own login, none since
