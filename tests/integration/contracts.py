"""Contract checks: every task of the project's YAML against the documented options of the module it calls.

The documentation is read at test time, with ``ansible-doc --json``, from the collections actually installed:
ansible-core's own modules, this collection, and the collections of the pinned ``ansible`` package
(ansible.windows, community.windows, community.general, awx.awx, ...). A misspelled option, an option the
module does not document, a value outside the documented ``choices`` or a missing required option fails.

Values that are Jinja templates are only checked for their names (their value is known at run time only).
"""
import json
import os
import subprocess

import yaml
from ansible.playbook.task import Task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TASK_KEYWORDS = set(Task.fattributes) | {'local_action', 'args', 'with_items', 'with_dict', 'with_list', 'with_fileglob',
                                         'with_sequence', 'with_subelements', 'with_together', 'with_nested'}
BLOCK_KEYS = ('block', 'rescue', 'always')
PLAY_TASK_LISTS = ('pre_tasks', 'tasks', 'post_tasks', 'handlers')
# modules whose arguments are free-form (key=value variables, a raw command line)
FREE_FORM = {'ansible.builtin.set_fact', 'ansible.builtin.set_stats', 'ansible.builtin.meta', 'ansible.builtin.raw',
             'ansible.builtin.include_tasks', 'ansible.builtin.import_tasks', 'ansible.builtin.import_playbook'}
_TYPES = {'bool': (bool,), 'int': (int,), 'float': (int, float), 'str': (str,), 'path': (str,), 'list': (list,),
          'dict': (dict,), 'raw': (object,), 'jsonarg': (object,), 'json': (object,), 'bytes': (str, int), 'bits': (str, int)}


def templated(value):
    """True when ``value`` (or anything inside it) is a Jinja expression, only known at run time."""
    if isinstance(value, str):
        return '{{' in value or '{%' in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def module_of(task):
    """The task's module (FQCN) and its arguments, or (None, None) for a block."""
    if any(k in task for k in BLOCK_KEYS):
        return None, None
    names = [k for k in task if k not in TASK_KEYWORDS]
    if len(names) != 1:
        raise ValueError('cannot tell the module of task %r: %s' % (task.get('name'), names))
    args = task[names[0]]
    if args is None:
        args = {}
    if isinstance(task.get('args'), dict):
        args = dict(task['args'], **(args if isinstance(args, dict) else {}))
    return names[0], args


def tasks_in(items, where):
    """Every task of a task list (blocks opened), with a label saying where it is."""
    for index, task in enumerate(items or []):
        label = '%s[%d] %s' % (where, index, task.get('name', ''))
        if any(k in task for k in BLOCK_KEYS):
            for key in BLOCK_KEYS:
                yield from tasks_in(task.get(key), '%s.%s' % (label, key))
        else:
            yield label, task


def project_tasks(root=ROOT):
    """Every task in the project's playbooks, roles and AWX configuration: (label, task) pairs."""
    found = []
    for base, dirs, files in os.walk(root):
        rel = os.path.relpath(base, root)
        top = rel.split(os.sep)[0]
        if top in ('.git', '.venv', 'build', 'tests', 'lab', 'bench', 'tools', 'changelogs', 'docs', 'meta', 'profiles',
                   'plugins', '.ansible') or '/defaults' in base or '/vars' in base or '/meta' in base or '/templates' in base:
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(('.yml', '.yaml')):
                continue
            path = os.path.join(base, name)
            with open(path, encoding='utf-8') as handle:
                data = yaml.safe_load(handle)
            if not isinstance(data, list):
                continue
            label = os.path.relpath(path, root)
            plays = ('hosts', 'import_playbook', 'ansible.builtin.import_playbook')
            if data and all(isinstance(item, dict) and any(k in item for k in plays) for item in data):
                for pindex, play in enumerate(data):
                    for key in PLAY_TASK_LISTS:
                        found.extend(tasks_in(play.get(key), '%s play[%d].%s' % (label, pindex, key)))
            elif '/tasks' in base or '/handlers' in base or top in ('awx',):
                found.extend(tasks_in(data, label))
    return found


def load_docs(names):
    """ansible-doc's documentation of each module in ``names`` (FQCN -> doc)."""
    proc = subprocess.run(['ansible-doc', '--json', '-t', 'module'] + sorted(names), capture_output=True, text=True,
                          check=False, env=dict(os.environ, ANSIBLE_NOCOLOR='1'))
    if proc.returncode != 0:
        raise RuntimeError('ansible-doc failed: %s' % proc.stderr[-2000:])
    data = json.loads(proc.stdout)
    return dict((name, entry['doc']) for name, entry in data.items())


def option_problems(options, args, where):
    """What is wrong with ``args`` against documented ``options`` (recursing into documented suboptions)."""
    problems = []
    names = {}
    for name, spec in options.items():
        names[name] = name
        for alias in spec.get('aliases') or []:
            names[alias] = name
    if not isinstance(args, dict):
        return problems if templated(args) else ['%s: arguments are %r, not options' % (where, args)]
    for key, value in args.items():
        if key not in names:
            problems.append('%s: %r is not an option of this module (it has: %s)' % (where, key, ', '.join(sorted(options))))
            continue
        spec = options[names[key]]
        if templated(value) or value is None:
            continue
        kind = spec.get('type')  # an option documented without a type (include_role's apply) is not type-checked
        if kind in _TYPES and not isinstance(value, _TYPES[kind]) and not (kind == 'list' and isinstance(value, str)):
            if not (kind == 'str' and isinstance(value, (int, float, bool))) and not (kind in ('int', 'float') and str(value).isdigit()):
                problems.append('%s: %s=%r is not of type %s' % (where, key, value, kind))
        choices = spec.get('choices')
        if choices:
            values = value if isinstance(value, list) and kind == 'list' else [value]
            for item in values:
                if item not in choices and str(item) not in [str(c) for c in choices]:
                    problems.append('%s: %s=%r is not one of %s' % (where, key, item, choices))
        subs = spec.get('suboptions')
        if subs and kind == 'dict' and isinstance(value, dict):
            problems.extend(option_problems(subs, value, '%s.%s' % (where, key)))
        elif subs and kind == 'list' and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    problems.extend(option_problems(subs, item, '%s.%s[%d]' % (where, key, index)))
    for name, spec in options.items():
        if spec.get('required') and not any(k in args for k in [name] + list(spec.get('aliases') or [])):
            problems.append('%s: the required option %r is missing' % (where, name))
    return problems


def task_problems(label, task, docs):
    """What is wrong with one task against the documentation of its module."""
    module, args = module_of(task)
    if module is None or module in FREE_FORM:
        return []
    if '.' not in module:
        return ['%s: %r is not a fully qualified module name' % (label, module)]
    doc = docs.get(module)
    if doc is None:
        return ['%s: %s is not a module of the installed collections' % (label, module)]
    options = dict(doc.get('options') or {})
    if 'free_form' in options and isinstance(args, str):
        return []
    options.pop('free_form', None)
    if isinstance(args, str):
        return [] if templated(args) else ['%s: %s takes options, not the string %r' % (label, module, args)]
    return option_problems(options, args, '%s (%s)' % (label, module))


def check(tasks):
    """Every contract problem of ``tasks`` ((label, task) pairs); the modules' docs are read once."""
    modules = set()
    problems = []
    for label, task in tasks:
        try:
            module, dummy = module_of(task)
        except ValueError as exc:
            problems.append('%s: %s' % (label, exc))
            continue
        if module and module not in FREE_FORM and '.' in module:
            modules.add(module)
    docs = load_docs(modules) if modules else {}
    for label, task in tasks:
        try:
            problems.extend(task_problems(label, task, docs))
        except ValueError:
            continue
    return problems, docs


def internal_options(module):
    """The ``_``-prefixed options a module of ansible.windows declares in its PowerShell (its action plugin's channel,
    e.g. win_copy's ``_copy_mode``): allowed to callers that play that action plugin's part, never documented."""
    import re  # pylint: disable=import-outside-toplevel
    namespace, collection, name = module.split('.')
    for root in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep) + [
            os.path.join(os.path.dirname(os.path.dirname(yaml.__file__)))]:
        path = os.path.join(root, 'ansible_collections', namespace, collection, 'plugins', 'modules', name + '.ps1')
        if os.path.exists(path):
            with open(path, encoding='utf-8-sig') as handle:
                text = handle.read()
            return sorted(set(re.findall(r'-name\s+"(_[a-z_]+)"', text)) | set(re.findall(r'^\s*(_[a-z_]+)\s*=\s*@\{', text, re.M)))
    return []


def call_problems(calls):
    """Every contract problem of module calls made from Python (``(module, args)`` pairs), as a task would be checked."""
    tasks = []
    for index, (module, args) in enumerate(calls):
        internal = set(internal_options(module)) if any(k.startswith('_') for k in args) else set()
        tasks.append(('call[%d]' % index, {'name': 'call', module: dict((k, v) for k, v in args.items() if k not in internal)}))
    return check(tasks)
