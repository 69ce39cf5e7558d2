"""The execution environment a site builds for AWX/Tower: ansible-builder reads what the collection declares.

``ansible-builder create`` (no container engine needed) writes the build context from execution-environment.yml;
``ansible-builder introspect`` is what the build runs inside the image to collect the requirements of every
installed collection: run on this collection, its Python requirements must name every distribution that the
collection's plugins import outside the standard library and ansible.
"""
import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILDER = os.path.join(os.path.dirname(sys.executable), 'ansible-builder')


def normal(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def third_party_imports():
    """Top-level modules the plugins import that are neither standard library nor ansible: {module: [files]}."""
    found = {}
    for base, dummy, files in os.walk(os.path.join(ROOT, 'plugins')):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(base, name)
            with open(path, encoding='utf-8') as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for module in names:
                    top = module.split('.')[0]
                    if top in sys.stdlib_module_names or top in ('ansible', 'ansible_collections', '__future__'):
                        continue
                    found.setdefault(top, []).append(os.path.relpath(path, ROOT))
    return found


def test_builder_context_and_collection_requirements(tmp_path):
    context = tmp_path / 'context'
    proc = subprocess.run([BUILDER, 'create', '-f', os.path.join(ROOT, 'execution-environment.yml'), '-c', str(context),
                           '--output-filename', 'Containerfile'], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / 'Containerfile').read_text(encoding='utf-8')
    assert 'ansible-galaxy collection install' in containerfile and 'introspect' in containerfile
    galaxy = yaml.safe_load((context / '_build' / 'requirements.yml').read_text(encoding='utf-8'))
    assert 'clinops.upgrade' in [c['name'] for c in galaxy['collections']]

    # what the build does inside the image once the collections are installed: introspect them
    collections = tmp_path / 'collections' / 'ansible_collections' / 'clinops'
    collections.mkdir(parents=True)
    shutil.copytree(os.path.join(ROOT, 'meta'), collections / 'upgrade' / 'meta')
    shutil.copy(os.path.join(ROOT, 'galaxy.yml'), collections / 'upgrade' / 'galaxy.yml')
    pip_out = tmp_path / 'pip.txt'
    bindep_out = tmp_path / 'bindep.txt'
    proc = subprocess.run([BUILDER, 'introspect', '--sanitize', '--write-pip', str(pip_out), '--write-bindep', str(bindep_out),
                           str(tmp_path / 'collections')], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    requirements = set()
    for line in pip_out.read_text(encoding='utf-8').splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            requirements.add(normal(re.split(r'[\[<>=!~; ]', line, 1)[0]))
    assert 'clinops.upgrade' in pip_out.read_text(encoding='utf-8')  # introspect names where each line comes from
    bindep = bindep_out.read_text(encoding='utf-8')
    assert 'postgresql-client' in bindep and 'mariadb-client' in bindep

    # every third-party import of the plugins is covered by a requirement of the collection, or by ansible-core's own
    # (PyYAML, Jinja2, cryptography... come with ansible-core in every execution environment)
    for line in importlib.metadata.requires('ansible-core') or []:
        requirements.add(normal(re.split(r'[\[<>=!~; ]', line, 1)[0]))
    distributions = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {'pynetdicom', 'psycopg', 'pymysql', 'firebird'} <= set(imports), imports
    missing = {}
    for module, files in imports.items():
        names = [normal(d) for d in distributions.get(module, [module])]
        if not any(n in requirements for n in names):
            missing[module] = (names, sorted(set(files)))
    assert not missing, 'imports with no requirement in meta/ee-requirements.txt: %s' % missing
