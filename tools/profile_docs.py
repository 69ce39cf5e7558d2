"""Write the key table of docs/PROFILES.md from profiles/schema.json (``make docs``).

    python tools/profile_docs.py            rewrites the table between the markers
    python tools/profile_docs.py --check    exits 1 when the committed table differs from the generated one
"""
import argparse
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(ROOT, 'profiles', 'schema.json')
DOC = os.path.join(ROOT, 'docs', 'PROFILES.md')
BEGIN = '<!-- BEGIN profile keys: generated from profiles/schema.json by tools/profile_docs.py (make docs); do not edit -->'
END = '<!-- END profile keys -->'


def _profile_utils():
    spec = importlib.util.spec_from_file_location('clinops_profile', os.path.join(ROOT, 'plugins', 'plugin_utils', 'profile.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _type(sub):
    kind = sub.get('type', '')
    kinds = kind if isinstance(kind, list) else [kind]
    words = {'object': 'mapping', 'array': 'list', 'integer': 'int', 'boolean': 'bool', 'string': 'str', 'number': 'number'}
    text = ' or '.join(words.get(k, k) for k in kinds)
    items = sub.get('items')
    if 'array' in kinds and isinstance(items, dict) and items.get('type') in ('string', 'integer'):
        text += ' of ' + words[items['type']]
    return text


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def table(schema):
    keys = _profile_utils().schema_keys(schema)
    required = {}

    def collect(node, prefix):
        for key in node.get('required', []):
            required[prefix + key] = True
        for key, sub in node.get('properties', {}).items():
            if sub.get('type') == 'object':
                collect(sub, prefix + key + '.')
            elif sub.get('type') == 'array' and isinstance(sub.get('items'), dict):
                collect(sub['items'], prefix + key + '[].')
    collect(schema, '')
    lines = ['| key | type | values | default | meaning |', '|---|---|---|---|---|']
    for path, sub in keys:
        values = ', '.join('`%s`' % v for v in sub.get('enum', []))
        if 'pattern' in sub:
            values = 'matches `%s`' % sub['pattern']
        for word, limit in (('minimum', '>='), ('exclusiveMinimum', '>'), ('maximum', '<=')):
            if word in sub:
                values = (values + ' ' if values else '') + '%s %s' % (limit, sub[word])
        default = 'required' if required.get(path) else ('`%s`' % json.dumps(sub['default']) if 'default' in sub else '')
        lines.append('| `%s` | %s | %s | %s | %s |' % (path, _type(sub), _cell(values), _cell(default), _cell(sub.get('description', ''))))
    return '\n'.join(lines) + '\n'


def render(doc, schema):
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[:start] + '\n' + table(schema) + doc[end:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='exit 1 when docs/PROFILES.md differs from the schema')
    args = parser.parse_args(argv)
    with open(SCHEMA, encoding='utf-8') as handle:
        schema = json.load(handle)
    with open(DOC, encoding='utf-8') as handle:
        doc = handle.read()
    new = render(doc, schema)
    if args.check:
        if new != doc:
            print('docs/PROFILES.md: the key table differs from profiles/schema.json; run make docs', file=sys.stderr)
            return 1
        return 0
    if new != doc:
        tmp = DOC + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as handle:
            handle.write(new)
        os.replace(tmp, DOC)
    return 0


if __name__ == '__main__':
    sys.exit(main())
