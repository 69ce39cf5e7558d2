"""prefs_migrate: 10,000 files / 500 MB first copy vs `cp -a`, and a rerun with nothing to do.

Ours runs through a real ansible-playbook (harness.run_task), so its time includes Ansible's start-up
(reported separately as a no-op run on an empty item).  The first copy stages every file, verifies it
by sha256 against its source, backs up nothing (dest is empty) and renames into place; `cp -a` copies
only.  The rerun compares size and mtime and hashes nothing.  Data lives in a temp dir under /tmp and
is deleted afterwards.
"""
import os
import shutil
import subprocess
import tempfile
import time

import harness

FILES = 10000
TOTAL = 500 * 1024 * 1024
MODULE = 'clinops.upgrade.prefs_migrate'


def _make_tree(root):
    size = TOTAL // FILES
    block = os.urandom(size)
    for index in range(FILES):
        folder = os.path.join(root, 'Server Database', 'Resources', 'd%02d' % (index % 50), 's%02d' % (index // 50 % 20))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, 'f%05d.bin' % index), 'wb') as handle:
            handle.write(block[index % 64:] + block[:index % 64])


def _timed(func):
    started = time.monotonic()
    value = func()
    return time.monotonic() - started, value


def run(report):
    work = tempfile.mkdtemp(prefix='bench-prefs-', dir='/tmp')
    try:
        src = os.path.join(work, 'old')
        _make_tree(src)
        subprocess.run(['sync'], check=False)
        for name in ('ours', 'cp', 'noop'):
            os.makedirs(os.path.join(work, name))
        args = dict(src=src, dest=os.path.join(work, 'ours'), items=[dict(path='Server Database')])

        noop_s = _timed(lambda: harness.run_task(MODULE, dict(src=src, dest=os.path.join(work, 'noop'),
                                                              items=[dict(path="absent")])))[0]
        cp_s = _timed(lambda: subprocess.run(['cp', '-a', os.path.join(src, 'Server Database'), os.path.join(work, 'cp')], check=True))[0]
        ours_s, result = _timed(lambda: harness.run_task(MODULE, args))
        if result.get('failed') or len(result['copied']) != FILES:
            raise RuntimeError('first copy failed: %s' % result.get('msg', result.get('copied', [])[:3]))
        report('prefs_migrate first copy 10k files/500MB', ours_s, cp_s,
               'vs cp -a; includes sha256 verify and ~%.1fs ansible-playbook start-up' % noop_s)
        rerun_s, again = _timed(lambda: harness.run_task(MODULE, args))
        if again.get('failed') or again['changed']:
            raise RuntimeError('rerun was not a no-op: %s' % again)
        report('prefs_migrate rerun, nothing to do', rerun_s, None, 'size+mtime compare, no hashing; ansible no-op run %.2fs' % noop_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)
