"""Benchmark of the site upgrade on the lab (lab/build_lab.py), printed by `make bench`, never asserted.

1. Server downtime (first stop -> verified start) of playbooks/upgrade.yml, read from the host's journal, vs a plain
   shell script doing the same necessary steps directly on a fresh lab in the same run: stop in the vendor's order,
   back up with sqlite3, unpack the release, swap, copy the properties, migrate with sqlite3, start, Echo TS and Echo DB
   until they answer, C-ECHO with dcmtk's echoscu, restart the license server (PMOD's step 8). Ours stages (unpacks) the
   release before the stop and runs the downtime as one upgrade_cutover task. Releases carry BENCH_RELEASE_MB (300) MB
   of stand-in libraries, the order of a real installation with its Java runtime.
2. Rollout to BENCH_UPGRADE_CLIENTS (100) clients with forks 20: seconds per client.
"""
import json
import os
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
from harness import ansible_env  # noqa: E402  pylint: disable=wrong-import-position,import-error

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


def playbook(inventory, extra=None):
    env = ansible_env({'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg'), 'ANSIBLE_STDOUT_CALLBACK': 'default'})
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', inventory, PLAYBOOK]
    for key, value in (extra or {}).items():
        cmd += ['-e', '%s=%s' % (key, value)]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-3000:])
    return time.monotonic() - started


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


def run(report):
    tmp = tempfile.mkdtemp(prefix='clb-', dir='/tmp')
    lab = os.path.join(tmp, 'lab')
    for size in sorted({0, int(os.environ.get('BENCH_RELEASE_MB', '300'))}):
        ours, plain = downtimes(lab, tmp, size)
        report('upgrade: server downtime (journal) vs plain script, %s release' % ('%d MB' % size if size else 'tiny'),
               ours, plain, 'both: stop, backup, swap, properties, migrations, start, Echo TS/DB, C-ECHO, license '
               'restart; ours also drains, verifies the backup, merges the properties key by key, journals each step')

    clients = int(os.environ.get('BENCH_UPGRADE_CLIENTS', '100'))
    inventory = build_lab.build(lab, clients=clients, quiet=True)
    seconds = playbook(inventory, {'upgrade_client_serial': '100%'})
    build_lab.teardown(lab, quiet=True)
    report('upgrade: rollout to %d clients, forks 20 (s per client)' % clients, seconds / clients, None,
           'whole run %.1f s incl. the server' % seconds)
    os.rmdir(tmp)
