"""Benchmark of the site upgrade on the lab (lab/build_lab.py), printed by `make bench`, never asserted.

1. Server downtime (first stop -> verified start) of playbooks/upgrade.yml, read from the host's journal, vs a plain
   shell script doing the same necessary steps directly on a fresh lab in the same run: stop in the vendor's order,
   back up with sqlite3, unpack the release, swap, copy the properties, migrate with sqlite3, start, Echo TS and Echo DB
   until they answer, C-ECHO with dcmtk's echoscu, restart the license server (PMOD's step 8). Ours stages (unpacks) the
   release before the stop and runs the downtime as one upgrade_cutover task. Releases carry BENCH_RELEASE_MB (300) MB
   of stand-in libraries, the order of a real installation with its Java runtime.
2. Clients: the whole site upgrade (server included) with BENCH_UPGRADE_CLIENTS (100) clients, forks
   BENCH_UPGRADE_FORKS (20), all clients in one batch, vs a plain bash script doing the same client steps for the same
   clients one after another on a fresh lab of the same size (unpack the release, swap, copy the properties, verify the
   server answers: Echo TS from the client and C-ECHO to the server's DICOM node). Printed: seconds per client for both
   and their ratio, the controller's CPU seconds per client (getrusage(RUSAGE_CHILDREN) around ansible-playbook and
   around the script; the lab's hosts are local, so the hosts' own module runs are in the figure too), and the module
   executions per client, per server and on the controller (localhost), counted by the test callback
   tests/integration/callback_plugins/module_count.py, not estimated, and the tasks each host meets (the same
   callback: task results per host, skipped ones included). Then the same once with
   BENCH_UPGRADE_CLIENTS_LARGE (300) clients (0: skip), to see whether seconds per client grow.
   Every client's installed VERSION is read back after each run: a run that did not upgrade them all is an error.
   The Mitogen strategy is not installed here: printed as "not measured".

BENCH_UPGRADE_PARTS (downtime,clients) picks the parts; a quick run:
   BENCH_UPGRADE_PARTS=clients BENCH_UPGRADE_CLIENTS=10 BENCH_UPGRADE_CLIENTS_LARGE=0 make bench BENCH_ARGS=upgrade
"""
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, 'lab'))
sys.path.insert(0, os.path.join(ROOT, 'tests', 'integration'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import ansible_env, module_count_env  # noqa: E402  pylint: disable=wrong-import-position,import-error

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'upgrade.yml')

PLAIN = r'''#!/bin/bash
# The necessary steps of a PMOD server upgrade, by hand, as a plain script would do them.
set -euo pipefail
ROOT_DIR="$1"; RELEASE="$2"; DB="$3"; CONF="$4"; PY="$5"; BACKUPS="$6"; AET="$7"; DPORT="$8"
SUP="$(dirname "$PY")/supervisorctl"
"$SUP" -c "$CONF" stop pmod-ds pmod-ts pmod-ls >/dev/null
sqlite3 "$DB" ".backup '$BACKUPS/plain-pre.sqlite'"
TMP="$(mktemp -d "$(dirname "$ROOT_DIR")/plain.XXXX")"
tar -xzf "$RELEASE" -C "$TMP"
mv "$ROOT_DIR" "${ROOT_DIR}_plainold"
mv "$TMP"/pmod-* "$ROOT_DIR"
rmdir "$TMP"
cp "${ROOT_DIR}_plainold"/properties/*.properties "$ROOT_DIR/properties/"
cp "${ROOT_DIR}_plainold"/bin/start-*.sh "$ROOT_DIR/bin/"
for f in "$ROOT_DIR"/sql/V4.3.1__*.sql "$ROOT_DIR"/sql/V4.3.2__*.sql; do sqlite3 "$DB" < "$f"; done
"$SUP" -c "$CONF" start pmod-ls pmod-ts pmod-ds >/dev/null
PROPS="$ROOT_DIR/properties/Config.properties"
for i in $(seq 1 100); do
  if "$PY" "$ROOT_DIR/bin/pmodctl.py" echo-ts --properties "$PROPS" | grep -q '^OK PMOD-TS 4.4.0' \
     && "$PY" "$ROOT_DIR/bin/pmodctl.py" echo-db --properties "$PROPS" | grep -q '^OK'; then
    /usr/bin/echoscu -aet CLINOPS_UPG -aec "$AET" 127.0.0.1 "$DPORT"
    "$SUP" -c "$CONF" restart pmod-ls >/dev/null
    exit 0
  fi
  sleep 0.2
done
exit 1
'''


def _children_cpu():
    """CPU seconds (user + system) of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def playbook(inventory, extra=None, env=None):
    """Run the upgrade playbook on the lab: (wall seconds, children's CPU seconds)."""
    env = ansible_env(dict({'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg'),
                            'ANSIBLE_STDOUT_CALLBACK': 'default'}, **(env or {})))
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', inventory, PLAYBOOK]
    for key, value in (extra or {}).items():
        cmd += ['-e', '%s=%s' % (key, value)]
    cpu = _children_cpu()
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:])
    return time.monotonic() - started, _children_cpu() - cpu


def downtimes(lab, tmp, size):
    """(ours, plain) seconds of downtime on a fresh lab each, releases with ``size`` MB of stand-in libraries."""
    inventory = build_lab.build(lab, clients=0, quiet=True, payload_mb=size)
    playbook(inventory)
    with open(os.path.join(lab, 'hosts', 'server1', 'state', 'journal.jsonl'), encoding='utf-8') as handle:
        entries = [json.loads(line) for line in handle]
    stop = [e for e in entries if e['step'] == 'stop' and e['result'] == 'ok'][0]
    verify = [e for e in entries if e['step'] == 'verify' and e['result'] == 'ok'][-1]
    ours = (datetime.fromisoformat(verify['ended']) - datetime.fromisoformat(stop['started'])).total_seconds()
    build_lab.teardown(lab, quiet=True)

    inventory = build_lab.build(lab, clients=0, quiet=True, payload_mb=size)
    with open(inventory, encoding='utf-8') as handle:
        handle.readline()
        server = json.load(handle)['all']['children']['servers']['hosts']['server1']
    script = os.path.join(tmp, 'plain.sh')
    with open(script, 'w', encoding='utf-8') as handle:
        handle.write(PLAIN)
    started = time.monotonic()
    subprocess.run(['bash', script, os.path.join(lab, 'hosts', 'server1', 'opt', 'PMOD'),
                    os.path.join(lab, 'releases', 'pmod-%s.tar.gz' % build_lab.NEW_VERSION), server['upgrade_db_path'],
                    server['upgrade_supervisor_config'], sys.executable, os.path.join(lab, 'hosts', 'server1', 'backups'),
                    server['pmod_dicom_aet'], str(server['pmod_ports']['dicom'])],
                   check=True)
    plain = time.monotonic() - started
    build_lab.teardown(lab, quiet=True)
    os.unlink(script)
    return ours, plain


PLAIN_CLIENTS = r'''#!/bin/bash
# The client steps of a PMOD upgrade, by hand, for each client in turn: unpack the release, swap, copy the properties,
# verify the server answers (Echo TS from the client, C-ECHO to the server's DICOM node).
set -euo pipefail
RELEASE="$1"; PY="$2"; SERVER_AET="$3"; SERVER_DPORT="$4"; shift 4
for ROOT_DIR in "$@"; do
  TMP="$(mktemp -d "$(dirname "$ROOT_DIR")/plain.XXXX")"
  tar -xzf "$RELEASE" -C "$TMP"
  mv "$ROOT_DIR" "${ROOT_DIR}_plainold"
  mv "$TMP"/pmod-* "$ROOT_DIR"
  rmdir "$TMP"
  cp "${ROOT_DIR}_plainold"/properties/*.properties "$ROOT_DIR/properties/"
  "$PY" "$ROOT_DIR/bin/pmodctl.py" echo-ts --properties "$ROOT_DIR/properties/Config.properties" | grep -q '^OK PMOD-TS'
  /usr/bin/echoscu -aet CLINOPS_UPG -aec "$SERVER_AET" 127.0.0.1 "$SERVER_DPORT"
done
'''


def _lab_hosts(inventory):
    """(server1's variables, [client names]) of a lab inventory (JSON after a first comment line)."""
    with open(inventory, encoding='utf-8') as handle:
        handle.readline()
        children = json.load(handle)['all']['children']
    return children['servers']['hosts']['server1'], sorted(children['clients']['hosts'])


def _check_versions(lab, hosts, what):
    """Every host's installed VERSION is the new release, else the run measured something else: an error."""
    behind = []
    for host in hosts:
        with open(os.path.join(lab, 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
            if handle.read().strip() != build_lab.NEW_VERSION:
                behind.append(host)
    if behind:
        raise RuntimeError('%s left %d host(s) on the old version: %s' % (what, len(behind), ' '.join(behind[:10])))


def _plain_clients(lab, tmp, inventory):
    """The plain script over every client of a fresh lab: (wall seconds, children's CPU seconds)."""
    server, clients = _lab_hosts(inventory)
    script = os.path.join(tmp, 'plain-clients.sh')
    with open(script, 'w', encoding='utf-8') as handle:
        handle.write(PLAIN_CLIENTS)
    cpu = _children_cpu()
    started = time.monotonic()
    subprocess.run(['bash', script, os.path.join(lab, 'releases', 'pmod-%s.tar.gz' % build_lab.NEW_VERSION),
                    sys.executable, server['pmod_dicom_aet'], str(server['pmod_ports']['dicom'])]
                   + [os.path.join(lab, 'hosts', c, 'opt', 'PMOD') for c in clients], check=True, capture_output=True)
    seconds, cpu = time.monotonic() - started, _children_cpu() - cpu
    os.unlink(script)
    _check_versions(lab, clients, 'the plain script')
    return seconds, cpu


def _counts_note(counts, clients):
    """Module executions per client (mean, min-max), per server and on the controller, from the callback's JSON."""
    per_client = [counts.get(c, 0) for c in clients]
    servers = sorted(h for h in counts if h.startswith('server'))
    return 'module executions: per client %.1f (min %d, max %d), per server %s, controller (localhost) %d' % (
        sum(per_client) / len(per_client), min(per_client), max(per_client),
        ', '.join('%s %d' % (s, counts[s]) for s in servers) or '0', counts.get('localhost', 0))


def _tasks_note(tasks, clients):
    """Task results per client (mean, min-max, skipped among them), per server and on localhost, from the callback."""
    per_client = [tasks.get(c, {}).get('tasks', 0) for c in clients]
    skipped = [tasks.get(c, {}).get('skipped', 0) for c in clients]
    others = ', '.join('%s %d (skipped %d)' % (h, tasks[h]['tasks'], tasks[h]['skipped'])
                       for h in sorted(tasks) if h not in clients)
    return 'tasks met (task results the controller handled, skipped ones included): per client %.1f (min %d, max %d; ' \
        'skipped %.1f), %s; all hosts %d' % (sum(per_client) / len(per_client), min(per_client), max(per_client),
                                             sum(skipped) / len(skipped), others or 'no other host',
                                             sum(t['tasks'] for t in tasks.values()))


def rollout(report, lab, tmp, clients):
    """Ours (whole site, forks BENCH_UPGRADE_FORKS) vs the plain script's client steps, for ``clients`` clients."""
    forks = os.environ.get('BENCH_UPGRADE_FORKS', '20')
    load_before = os.getloadavg()[0]
    plain_s, plain_cpu = _plain_clients(lab, tmp, build_lab.build(lab, clients=clients, quiet=True))
    build_lab.teardown(lab, quiet=True)

    inventory = build_lab.build(lab, clients=clients, quiet=True)
    server, names = _lab_hosts(inventory)
    del server
    counts_path = os.path.join(tmp, 'module-count.json')
    seconds, cpu = playbook(inventory, {'upgrade_client_serial': '100%'},
                            dict(module_count_env(counts_path), ANSIBLE_FORKS=forks))
    _check_versions(lab, ['server1'] + names, 'the playbook')
    build_lab.teardown(lab, quiet=True)
    with open(counts_path, encoding='utf-8') as handle:
        counts = json.load(handle)
    with open(counts_path + '.modules.json', encoding='utf-8') as handle:
        modules = json.load(handle)
    with open(counts_path + '.tasks.json', encoding='utf-8') as handle:
        tasks = json.load(handle)
    for path in (counts_path, counts_path + '.modules.json', counts_path + '.tasks.json'):
        os.unlink(path)
    load = 'load average %.1f before, %.1f after, %d cores' % (load_before, os.getloadavg()[0], os.cpu_count())
    report('upgrade: %d clients, forks %s vs plain script (s per client)' % (clients, forks), seconds / clients,
           plain_s / clients, 'ours: the whole site, server included, %.1f s in all; plain: the client steps only, '
           'one client after another, %.1f s in all; %s' % (seconds, plain_s, load))
    report('upgrade: %d clients, controller CPU (s per client)' % clients, cpu / clients, plain_cpu / clients,
           'getrusage(RUSAGE_CHILDREN) around ansible-playbook / the script; the lab hosts are local, so the '
           'hosts\' module runs are in it too; ours %.1f s CPU in all' % cpu)
    report('upgrade: %d clients, module executions (counted)' % clients, None, None, _counts_note(counts, names))
    report('upgrade: %d clients, module executions by module' % clients, None, None, '; '.join(
        '%s: %s' % (host, ', '.join('%s %d' % (name.split('.')[-1], n) for name, n in sorted(modules.get(host, {}).items())))
        for host in (names[0], 'server1', 'localhost')))
    report('upgrade: %d clients, tasks met per host (counted)' % clients, None, None, _tasks_note(tasks, names))


def run(report):
    tmp = tempfile.mkdtemp(prefix='clb-', dir='/tmp')
    lab = os.path.join(tmp, 'lab')
    parts = os.environ.get('BENCH_UPGRADE_PARTS', 'downtime,clients').split(',')
    if 'downtime' in parts:
        for size in sorted({0, int(os.environ.get('BENCH_RELEASE_MB', '300'))}):
            ours, plain = downtimes(lab, tmp, size)
            report('upgrade: server downtime (journal) vs plain script, %s release' % (
                '%d MB' % size if size else 'tiny'), ours, plain, 'both: stop, backup, swap, properties, migrations, '
                'start, Echo TS/DB, C-ECHO, license restart; ours also drains, verifies the backup, merges the '
                'properties key by key, journals each step')
    if 'clients' in parts:
        for clients in (int(os.environ.get('BENCH_UPGRADE_CLIENTS', '100')),
                        int(os.environ.get('BENCH_UPGRADE_CLIENTS_LARGE', '300'))):
            if clients > 0:
                rollout(report, lab, tmp, clients)
        mitogen = importlib.util.find_spec('ansible_mitogen') is not None
        report('upgrade: Mitogen strategy', None, None, 'not measured (%s)' % (
            'installed, but not wired into this bench' if mitogen else 'not installed; nothing is installed for the bench'))
    os.rmdir(tmp)
