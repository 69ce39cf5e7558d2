# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): what every ansible.windows double shares.
"""The real module's documented options as an argument spec, and the lab's services as Windows services."""
from __future__ import annotations

import ast
import glob
import json
import os
import re
import subprocess
import sys

import yaml
from ansible.module_utils.basic import AnsibleModule

_TYPES = {'str', 'bool', 'int', 'float', 'list', 'dict', 'path', 'raw', 'bytes', 'bits', 'json', 'jsonarg', 'sid'}


def real_modules_dir():
    roots = [os.environ.get('CLINOPS_REAL_COLLECTIONS', '')]
    roots += glob.glob(os.path.join(sys.prefix, 'lib', 'python3*', 'site-packages', 'ansible_collections'))
    for root in roots:
        path = os.path.join(root, 'ansible', 'windows', 'plugins', 'modules')
        if root and os.path.isdir(path):
            return path
    raise RuntimeError('the real ansible.windows collection is not found (set CLINOPS_REAL_COLLECTIONS)')


def real_documentation(name):
    base = os.path.join(real_modules_dir(), name)
    if os.path.exists(base + '.py'):
        with open(base + '.py', encoding='utf-8') as handle:
            tree = ast.parse(handle.read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'DOCUMENTATION' for t in node.targets):
                return yaml.safe_load(node.value.value)
    with open(base + '.yml', encoding='utf-8') as handle:
        doc = yaml.safe_load(handle)['DOCUMENTATION']
    return yaml.safe_load(doc) if isinstance(doc, str) else doc


def real_internal_options(name):
    """The ``_``-prefixed options the real PowerShell module declares (the action plugin's private channel)."""
    path = os.path.join(real_modules_dir(), name + '.ps1')
    if not os.path.exists(path):
        return []
    with open(path, encoding='utf-8-sig') as handle:
        text = handle.read()
    return sorted(set(re.findall(r'-name\s+"(_[a-z_]+)"', text)) | set(re.findall(r'^\s*(_[a-z_]+)\s*=\s*@\{', text, re.M)))


def real_supports_check_mode(name):
    """Whether the real module supports check mode: its documented ``attributes.check_mode.support`` where the
    documentation has one, else what its ``.ps1`` declares (``supports_check_mode = $true`` / ``-supports_check_mode
    $true``). A module that does not is skipped by Ansible in check mode, as AnsibleModule does here."""
    support = ((real_documentation(name).get('attributes') or {}).get('check_mode') or {}).get('support')
    if support:
        return support in ('full', 'partial')
    path = os.path.join(real_modules_dir(), name + '.ps1')
    with open(path, encoding='utf-8-sig') as handle:
        found = re.search(r'supports_check_mode\s*=?\s*\$(true|false)', handle.read(), re.I)
    return bool(found) and found.group(1).lower() == 'true'


def real_should_process_pattern():
    """The pattern by which the real win_powershell tells that a script declares SupportsShouldProcess (read from its
    ``.ps1``): only such a script is run in check mode; any other is skipped (``changed``, "skipped, running in check
    mode")."""
    with open(os.path.join(real_modules_dir(), 'win_powershell.ps1'), encoding='utf-8-sig') as handle:
        found = re.search(r"\$supportsShouldProcess = \$scriptContent -match '([^']+)'", handle.read())
    if not found:
        raise RuntimeError('the real win_powershell no longer says how it recognises SupportsShouldProcess')
    return re.compile(found.group(1), re.I)  # PowerShell's -match ignores case


def spec_of(options):
    spec = {}
    for key, doc in (options or {}).items():
        entry = {'type': doc.get('type') if doc.get('type') in _TYPES else 'raw'}
        if entry['type'] == 'sid':
            entry['type'] = 'str'
        for attr in ('choices', 'default', 'aliases', 'elements', 'required', 'no_log'):
            if attr in doc:
                entry[attr] = doc[attr]
        if entry.get('elements') not in (None,) and entry['elements'] not in _TYPES:
            entry['elements'] = 'raw'
        if doc.get('suboptions'):
            entry['options'] = spec_of(doc['suboptions'])
        spec[key] = entry
    return spec


def module(name, **kwargs):
    """An AnsibleModule with the real module's options: an undocumented option fails as on the real host."""
    doc = real_documentation(name)
    spec = spec_of(doc.get('options'))
    for internal in real_internal_options(name):
        spec.setdefault(internal, {'type': 'raw'})
    kwargs.setdefault('supports_check_mode', real_supports_check_mode(name))
    mod = AnsibleModule(argument_spec=spec, **kwargs)
    for key, value in list(mod.params.items()):
        mod.params[key] = lab_path(value)
    return mod


def lab_path(value):
    """A Windows path without a drive (``\\tmp\\lab\\hosts\\...``, what ntpath makes of the lab's folders) as the lab's
    own path; anything else unchanged."""
    if isinstance(value, list):
        return [lab_path(v) for v in value]
    if isinstance(value, str) and value.startswith('\\') and not value.startswith('\\\\'):
        return value.replace('\\', '/')
    return value


# -- services: supervisor programs named like Windows services --------------------------------------------------------
def service_configs():
    path = os.environ.get('CLINOPS_WIN_DOUBLE_SERVICES')
    if not path or not os.path.exists(path):
        return {}
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def supervisorctl(config, *args):
    proc = subprocess.run([sys.executable, '-m', 'supervisor.supervisorctl', '-c', config] + list(args),
                          capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def service_state(name):
    """dict(state, process_id) of the program ``name``, or None when no such service."""
    for service, config in service_configs().items():
        if service.lower() != name.lower():
            continue
        dummy, out = supervisorctl(config, 'status', service)
        match = re.search(r'^\S+\s+(\w+)(?:\s+pid (\d+))?', out.strip())
        status = match.group(1) if match else 'UNKNOWN'
        state = {'RUNNING': 'started', 'STARTING': 'start_pending', 'STOPPING': 'stop_pending'}.get(status, 'stopped')
        return dict(name=service, display_name=service, state=state,
                    process_id=int(match.group(2)) if match and match.group(2) else 0, config=config)
    return None
