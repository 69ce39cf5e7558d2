"""Run this collection's modules and playbooks through real ansible-playbook processes.

Integration tests call :func:`run_task` (one module call) or :func:`run_playbook` and read back the
per-task results that the ``ansible.posix.json`` stdout callback prints.  Modules run on localhost
with the test interpreter (the project's .venv), which has every Python driver the modules use.
"""
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, 'build', 'collections')


def ansible_env(extra=None):
    """Environment for an ansible-playbook child: this checkout first on the collections path."""
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'true',
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
        'ANSIBLE_CALLBACK_RESULT_FORMAT': 'json',
        'ANSIBLE_HOST_KEY_CHECKING': 'false',
        'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCAL_TEMP': os.path.join(tempfile.gettempdir(), 'clinops-ansible-local'),
        'ANSIBLE_REMOTE_TEMP': os.path.join(tempfile.gettempdir(), 'clinops-ansible-remote'),
        'PATH': os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''),
    })
    if extra:
        env.update(extra)
    return env


MODULE_COUNT_PLUGINS = os.path.join(ROOT, 'tests', 'integration', 'callback_plugins')


def module_count_env(path, enabled=''):
    """Environment additions that count module executions per target host into ``path`` (JSON {host: count}).

    ``enabled`` lists other callbacks to keep enabled beside the counter (comma separated).
    """
    return {
        'ANSIBLE_CALLBACK_PLUGINS': MODULE_COUNT_PLUGINS,
        'ANSIBLE_CALLBACKS_ENABLED': ','.join(n for n in (enabled, 'module_count') if n),
        'CLINOPS_MODULE_COUNT': path,
    }


class PlayResult:
    """What one ansible-playbook run returned: exit code, the parsed JSON, and per-task results."""

    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data
        self.tasks = []
        for play in (data or {}).get('plays', []):
            for task in play.get('tasks', []):
                self.tasks.append(task)

    def result(self, name=None, host='localhost'):
        """The result dict of the task called ``name`` (the last task when no name is given)."""
        tasks = self.tasks if name is None else [t for t in self.tasks if t['task']['name'] == name]
        if not tasks:
            raise AssertionError('no task %r in the run:\n%s\n%s' % (name, self.stdout[-4000:], self.stderr[-4000:]))
        return tasks[-1]['hosts'][host]

    @property
    def stats(self):
        return (self.data or {}).get('stats', {})

    def __repr__(self):
        return '<PlayResult rc=%s stdout=%s stderr=%s>' % (self.rc, self.stdout[-3000:], self.stderr[-3000:])


def run_playbook(playbook, inventory=None, check=False, diff=False, extra_vars=None, env=None,
                 timeout=900, args=()):
    """Run a playbook (a path, or a list of plays to write to a temporary file)."""
    with tempfile.TemporaryDirectory(prefix='clinops-play-') as tmp:
        if not isinstance(playbook, str):
            path = os.path.join(tmp, 'play.yml')
            with open(path, 'w', encoding='utf-8') as handle:
                yaml.safe_dump(playbook, handle, sort_keys=False)
            playbook = path
        if inventory is None:
            inventory = os.path.join(tmp, 'inventory.ini')
            with open(inventory, 'w', encoding='utf-8') as handle:
                handle.write('localhost ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable)
        cmd = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', inventory, playbook]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if extra_vars:
            cmd += ['-e', json.dumps(extra_vars)]
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(env), timeout=timeout,
                              check=False, cwd=ROOT)
    try:
        data = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        data = None
    result = PlayResult(proc, data)
    if data is None:
        raise AssertionError('ansible-playbook printed no JSON: %r' % result)
    return result


def run_task(module, args=None, check=False, diff=False, env=None, ignore_errors=True, **kwargs):
    """Run one module once on localhost and return its result dict (``failed`` set when it failed)."""
    task = {'name': 'under test', module: args or {}, 'ignore_errors': ignore_errors}
    play = [{'name': 'test', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [task]}]
    return run_playbook(play, check=check, diff=diff, env=env, **kwargs).result('under test')
