#!/usr/bin/env bash
# `make demo`: build the lab (unless it already runs), upgrade it from PMOD 4.3.0 to 4.4.0 with
# playbooks/upgrade.yml, print a summary, and print the JSON report's path as the very last line.
# A second run finds every host on its target version and reports nothing to do.
# `make demo PRODUCT=imageserver`: the same with the ImageServer stand-in (1.3.0 -> 2.0.0, installer-driven).
# `make demo PRODUCT=conaktiv`: the same with the lab's ConAktiv (9.1.0 -> 9.2.0, the release downloaded from the lab's
# FTP server, three user sessions told and waited for, 30 s wait time; the e-mail needs an SMTP server:
# -e upgrade_notify_smtp_host=... -e upgrade_notify_smtp_port=..., else the run warns that it was not sent).
# `make demo PRODUCT=ksamu`: the KSAMU lab (real Firebird 3.0), a major update 6.0.51.22965 -> 6.0.52.23001 from the
# stable channel, its 8-minute warning shortened to 8 x DEMO_SECONDS_PER_MINUTE seconds (it says so).
#   LAB=/tmp/clinops-lab  CLIENTS=3  PRODUCT=pmod|imageserver|conaktiv|ksamu   lab/demo.sh [extra ansible-playbook args]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
PRODUCT="${PRODUCT:-pmod}"
# each product its own default folder, so that the PMOD demo's lab is never taken for another product's
if [[ "$PRODUCT" == pmod ]]; then LAB="${LAB:-/tmp/clinops-lab}"; else LAB="${LAB:-/tmp/clinops-lab-$PRODUCT}"; fi
PY="$ROOT/.venv/bin/python"
PRODUCT="${PRODUCT:-pmod}"
export ANSIBLE_CONFIG="$HERE/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/build/collections"

lab_running() {
    local pidfile="$LAB/hosts/server1/supervisor/supervisord.pid"
    [[ -f "$LAB/inventory/hosts.yml" && -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null \
        && grep -q "\"upgrade_profile\": \"$PRODUCT\"" "$LAB/inventory/hosts.yml"
}
if lab_running; then
    echo "demo: reusing the lab under $LAB (lab/build_lab.py --root $LAB --teardown removes it)" >&2
else
    "$PY" "$HERE/build_lab.py" --root "$LAB" --clients "${CLIENTS:-3}" --product "$PRODUCT" >&2
fi
EXTRA=()
if [[ "$PRODUCT" == ksamu ]]; then
    SPM="${DEMO_SECONDS_PER_MINUTE:-2}"
    echo "demo: KSAMU major update; the 8-minute warning before the database lock is SHORTENED for the demo:" \
         "one of its minutes lasts ${SPM} s (server_upgrade_warning_seconds_per_minute=${SPM}; a site keeps 60)" >&2
    EXTRA=(-e "server_upgrade_warning_seconds_per_minute=$SPM")
fi
RUN_ID="demo-$(date -u +%Y%m%dT%H%M%SZ)"
LOG="$LAB/reports/$RUN_ID.log"
mkdir -p "$LAB/reports"
echo "demo: ansible-playbook playbooks/upgrade.yml -i $LAB/inventory/hosts.yml (log: $LOG)" >&2
set +e
"$ROOT/.venv/bin/ansible-playbook" "$ROOT/playbooks/upgrade.yml" -i "$LAB/inventory/hosts.yml" \
    -e "upgrade_run_id=$RUN_ID" "${EXTRA[@]}" "$@" >"$LOG" 2>&1
RC=$?
set -e
REPORT="$LAB/reports/upgrade-$RUN_ID.json"
if [[ ! -f "$REPORT" ]]; then
    REPORT="$LAB/reports/upgrade-$RUN_ID-check.json"
fi
if [[ ! -f "$REPORT" ]]; then
    tail -40 "$LOG" >&2
    echo "demo: the playbook stopped (rc $RC) before writing its report" >&2
    exit 1
fi
"$PY" - "$REPORT" <<'PYEOF'
import json, sys
data = json.load(open(sys.argv[1]))
print('upgrade run %s%s' % (data['run_id'], ' (check mode)' if data['check_mode'] else ''))
if data['nothing_to_do']:
    print('nothing to do: every host already runs its target version')
for h in data['hosts']:
    extra = ', downtime %.1f s' % float(h['downtime_s']) if h.get('downtime_s') not in (None, '', 'None') else ''
    for job in h.get('post_jobs') or []:
        progress = job.get('progress') or {}
        extra += '; after the start: %s %s%s' % (job['name'], job['result'], ' (%s/%s)' % (progress['done'], progress['total'])
                                               if 'done' in progress and 'total' in progress else '')
    if h.get('channel'):
        extra += ', %s %s channel' % (h.get('kind', ''), h['channel'])
    print('  %-10s %-7s %-12s %s -> %s%s' % (h['host'], h.get('role', ''), h['result'], h.get('from_version', ''), h.get('to_version', ''), extra))
print('HTML report: %s' % sys.argv[1][:-5] + '.html')
PYEOF
echo "$REPORT"
exit $RC
