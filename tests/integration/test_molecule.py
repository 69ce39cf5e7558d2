"""The molecule scenarios (extensions/molecule/*) as tests of the parallel run: each runs ``molecule test -s <name>``
(destroy, create, converge, idempotence, verify, destroy) on its own lab in its own temp folder, so the scenarios run
beside each other and beside the other tests instead of one after the other (``make molecule`` still runs them in a row
on the fixed folders /tmp/clinops-molecule-*)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXTENSIONS = os.path.join(ROOT, 'extensions')
SCENARIOS = sorted(name for name in os.listdir(os.path.join(EXTENSIONS, 'molecule'))
                   if os.path.exists(os.path.join(EXTENSIONS, 'molecule', name, 'molecule.yml')))
# each action of the sequence says so when it succeeded; verify's play is named "Verify - ..." in every verify.yml
PASSED = [re.compile(r'\b%s\b.*: Executed: Successful' % action) for action in ('create', 'converge', 'idempotence', 'verify')]


def test_every_scenario_is_a_test():
    assert SCENARIOS == ['conaktiv', 'default', 'imageserver', 'ksamu'], SCENARIOS


@pytest.mark.parametrize('scenario', SCENARIOS)
def test_molecule_scenario(scenario, tmp_path):
    # under /tmp, searchable by others: pytest's tmp_path (0700) is closed to the postgres user of the lab's PostgreSQL
    parent = tempfile.mkdtemp(prefix='clinops-molecule-%s-' % scenario)
    os.chmod(parent, 0o755)
    lab = pathlib.Path(parent, 'lab')
    env = dict(os.environ, CLINOPS_MOLECULE_LAB=str(lab), MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path / 'molecule'),
               NO_COLOR='1', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    env.pop('MOLECULE_SCENARIO_NAME', None)
    left_behind = False
    try:
        proc = subprocess.run(['molecule', 'test', '-s', scenario], cwd=EXTENSIONS, env=env, capture_output=True,
                              text=True, timeout=1800, check=False)
    finally:
        left_behind = lab.exists()
        if left_behind:     # a run that broke off before its last destroy: stop the lab's processes by PID
            subprocess.run([sys.executable, os.path.join(ROOT, 'lab', 'build_lab.py'), '--root', str(lab), '--teardown'],
                           capture_output=True, check=False, timeout=300)
        shutil.rmtree(parent, ignore_errors=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, 'molecule test -s %s ended with %d:\n%s' % (scenario, proc.returncode, output[-20000:])
    assert [p.pattern for p in PASSED if not p.search(output)] == [], output[-20000:]
    assert output.count('PLAY [Verify - ') == 1, output[-20000:]
    assert not left_behind, 'the last destroy left %s behind' % lab
