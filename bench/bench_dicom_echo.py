"""dicom_echo vs dcmtk echoscu (printed by `make bench`, never asserted).

1. 100 peers: 100 dcmtk storescp processes, each on its own loopback port (100 real, distinct peers).
   Ours: one dicom_echo task with the 100 entries in ``peers`` (echoed concurrently), timed twice: the
   whole ansible-playbook run, and the module alone (``python -m ...dicom_echo args.json``).
   Plain: ``echoscu`` run 100 times in a shell-less loop, once per peer.
2. Per-echo latency with 50 echoes against one storescp: ``repeat: 50`` (module alone, wall time / 50;
   the module's own median latency is in the note) vs ``echoscu --repeat 50`` (wall time / 50).
   Both open one association per echo.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import dicom_peers
from harness import ROOT, ansible_env, run_task

PEERS = 100
REPEAT = 50
MODULE = 'ansible_collections.clinops.upgrade.plugins.modules.dicom_echo'


def _run_module(args, workdir):
    """Run the module alone (no ansible-playbook), return (seconds, result)."""
    path = os.path.join(workdir, 'args-%s.json' % time.monotonic_ns())
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    env = ansible_env({'PYTHONPATH': os.path.join(ROOT, 'build', 'collections')})
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, '-m', MODULE, path], capture_output=True, text=True, env=env,
                          check=False, timeout=600)
    elapsed = time.perf_counter() - started
    result = json.loads(proc.stdout)
    if result.get('failed'):
        raise RuntimeError('dicom_echo failed: %s' % result.get('msg'))
    return elapsed, result


def _echoscu(echoscu, peer, *extra):
    proc = subprocess.run([echoscu, '-aec', peer.aet, *extra, dicom_peers.LOCALHOST, str(peer.port)],
                          capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError('echoscu failed against %r: %s' % (peer, proc.stderr))


def run(report):
    echoscu = dicom_peers.dcmtk('echoscu')
    workdir = tempfile.mkdtemp(prefix='bench-dicom-echo-')
    peers = []
    try:
        for index in range(PEERS):
            peers.append(dicom_peers.start_storescp(workdir, aet='SCP%03d' % index, wait=False))
        for peer in peers:
            peer.wait_ready()
        entries = [{'host': dicom_peers.LOCALHOST, 'port': p.port, 'called_aet': p.aet} for p in peers]

        # warm-up: page in Python, pynetdicom and ansible once so neither side pays a cold cache
        _run_module({'peers': entries[:2]}, workdir)
        _echoscu(echoscu, peers[0])

        started = time.perf_counter()
        result = run_task('clinops.upgrade.dicom_echo', {'peers': entries}, ignore_errors=False)
        playbook_s = time.perf_counter() - started
        if result.get('failed') or len(result['results']) != PEERS:
            raise RuntimeError('dicom_echo task failed: %s' % result.get('msg'))
        module_s = _run_module({'peers': entries}, workdir)[0]

        started = time.perf_counter()
        for peer in peers:
            _echoscu(echoscu, peer)
        loop_s = time.perf_counter() - started

        report('dicom_echo 100 peers, ansible-playbook task', playbook_s, loop_s,
               '100 storescp processes on 100 ports; plain = echoscu x100 in a loop')
        report('dicom_echo 100 peers, module alone', module_s, loop_s,
               'python -m dicom_echo (no ansible-playbook overhead)')

        one = peers[0]
        module_s, result = _run_module({'host': dicom_peers.LOCALHOST, 'port': one.port, 'called_aet': one.aet,
                                        'repeat': REPEAT}, workdir)
        stats = result['results'][0]['latency_ms']
        started = time.perf_counter()
        _echoscu(echoscu, one, '--repeat', str(REPEAT))
        plain_s = time.perf_counter() - started
        report('dicom_echo repeat 50, seconds per echo', module_s / REPEAT, plain_s / REPEAT,
               'module wall/50 incl. start-up; its own latency_ms min/median/max %.1f/%.1f/%.1f ms; '
               'plain = echoscu --repeat 50 wall/50' % (stats['min'], stats['median'], stats['max']))
    finally:
        for peer in peers:
            peer.stop()
        shutil.rmtree(workdir, ignore_errors=True)
