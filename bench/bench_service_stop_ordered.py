"""service_stop_ordered vs a loop of community.general.supervisorctl tasks: stop then start ten programs of one
real supervisord, in one ansible-playbook run each.

Both sides wait for every program to be down before the next (supervisorctl stop waits for the exit; ours also
waits for the port to close) and start in reverse order.  The programs exit at once on SIGTERM and listen at once,
so the numbers are the per-task and per-call overhead, not the programs' own stop time.
"""
import pathlib
import tempfile
import time

from harness import run_playbook
from test_service_stop_ordered import Supervisord

PROGRAMS = ['prog%02d' % i for i in range(10)]
ROUNDS = 2


def ours_play(sup):
    services = [{'name': name, 'port': sup.ports[name]} for name in PROGRAMS]
    args = {'supervisor_config': sup.conf, 'services': services, 'poll_interval': 0.1}
    return [{'name': 'ours', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'stop', 'clinops.upgrade.service_stop_ordered': dict(args, state='stopped')},
        {'name': 'start', 'clinops.upgrade.service_stop_ordered': dict(args, state='started')},
    ]}]


def plain_play(sup):
    return [{'name': 'plain', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'stop', 'community.general.supervisorctl': {'name': '{{ item }}', 'state': 'stopped', 'config': sup.conf},
         'loop': PROGRAMS},
        {'name': 'start', 'community.general.supervisorctl': {'name': '{{ item }}', 'state': 'started', 'config': sup.conf},
         'loop': list(reversed(PROGRAMS))},
    ]}]


def timed(play):
    started = time.monotonic()
    res = run_playbook(play)
    elapsed = time.monotonic() - started
    if res.rc != 0:
        raise RuntimeError('playbook failed: %r' % res)
    return elapsed


def run(report):
    with tempfile.TemporaryDirectory(prefix='bench-sso-') as tmp:
        sup = Supervisord(pathlib.Path(tmp), dict((name, {'exit_delay': 0, 'start_delay': 0}) for name in PROGRAMS))
        try:
            ours, plain = [], []
            for dummy in range(ROUNDS):
                ours.append(timed(ours_play(sup)))
                plain.append(timed(plain_play(sup)))
            states = sup.states()
            if set(states.values()) != {'RUNNING'}:
                raise RuntimeError('programs not all running after the bench: %s' % states)
        finally:
            sup.close()
    report('service_stop_ordered: stop+start 10 supervisor programs', min(ours), min(plain),
           'best of %d; one task each way vs a 10-item supervisorctl loop each way' % ROUNDS)
