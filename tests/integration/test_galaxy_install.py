"""The collection as Galaxy ships it: ``ansible-galaxy collection build``, installed into an empty collections path,
and the lab upgraded from that installed copy (no link to this checkout anywhere on the collections path)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'lab'))

import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import run_playbook  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)


@pytest.fixture
def installed(tmp_path):
    """The built collection installed under tmp_path/collections, its dependencies from the pinned ansible package."""
    out = tmp_path / 'dist'
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(out), ROOT],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarball = [p for p in out.iterdir() if p.name.endswith('.tar.gz')]
    assert len(tarball) == 1
    collections = tmp_path / 'collections'
    requirements = tmp_path / 'requirements.yml'
    requirements.write_text('---\ncollections:\n  - name: %s\n    type: file\n' % tarball[0], encoding='utf-8')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='true')
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', '-r', str(requirements),
                           '-p', str(collections)], capture_output=True, text=True, check=False, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = collections / 'ansible_collections' / 'clinops' / 'upgrade'
    assert root.is_dir() and not root.is_symlink()
    # what Galaxy users get: the roles, playbooks, profiles and plugins; none of the test equipment
    for present in ('roles', 'playbooks', 'profiles', 'plugins/modules', 'meta/runtime.yml', 'MANIFEST.json'):
        assert (root / present).exists(), present
    for absent in ('tests', 'lab', 'bench', 'tools', '.venv', 'build', 'Makefile'):
        assert not (root / absent).exists(), absent
    return str(collections)


def test_lab_upgraded_from_the_installed_collection(installed, tmp_path):
    lab = str(tmp_path / 'lab')
    inventory = build_lab.build(lab, clients=1, servers=1, rows=500, quiet=True)
    try:
        env = {'ANSIBLE_CONFIG': os.path.join(ROOT, 'lab', 'ansible.cfg'), 'ANSIBLE_COLLECTIONS_PATH': installed}
        result = run_playbook('clinops.upgrade.upgrade', inventory=inventory, env=env, timeout=1200)
        assert result.rc == 0, result
        # the only clinops.upgrade on that collections path is the installed copy
        listing = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list', 'clinops.upgrade'],
                                 capture_output=True, text=True, check=False,
                                 env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=installed, ANSIBLE_CONFIG=env['ANSIBLE_CONFIG']))
        paths = [line[2:].strip() for line in listing.stdout.splitlines() if line.startswith('# ')]
        assert paths == [os.path.join(installed, 'ansible_collections')], listing.stdout
        for host in ('server1', 'client1'):
            with open(os.path.join(lab, 'hosts', host, 'opt', 'PMOD', 'VERSION'), encoding='ascii') as handle:
                assert handle.read().strip() == build_lab.NEW_VERSION
    finally:
        build_lab.teardown(lab, quiet=True)
