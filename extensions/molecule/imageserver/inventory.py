#!/usr/bin/env python
"""Dynamic inventory for molecule: the lab's generated inventory (lab/build_lab.py), or empty groups before it exists."""
import json
import os
import sys

LAB = os.environ.get('CLINOPS_MOLECULE_LAB', '/tmp/clinops-molecule-imageserver')


def main():
    if '--host' in sys.argv:
        print('{}')
        return
    out = {'_meta': {'hostvars': {}}, 'all': {'children': ['servers', 'clients'], 'vars': {}},
           'servers': {'hosts': []}, 'clients': {'hosts': []}}
    path = os.path.join(LAB, 'inventory', 'hosts.yml')
    if os.path.exists(path):
        with open(path, encoding='utf-8') as handle:
            handle.readline()
            data = json.load(handle)['all']
        out['all']['vars'] = data['vars']
        for group in ('servers', 'clients'):
            for host, hostvars in data['children'][group]['hosts'].items():
                out[group]['hosts'].append(host)
                out['_meta']['hostvars'][host] = hostvars
    print(json.dumps(out))


main()
