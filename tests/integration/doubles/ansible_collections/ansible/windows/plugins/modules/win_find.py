# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import os

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def main():
    mod = module('win_find')
    p = mod.params
    if p['recurse'] or p['patterns'] or p['age'] or p['size']:
        mod.fail_json(msg='the double lists one folder level without filters (what the engine asks)')
    files = []
    examined = 0
    for folder in p['paths']:
        if not os.path.isdir(folder):
            mod.fail_json(msg="Argument path %s does not exist cannot get information on" % folder)
        for name in sorted(os.listdir(folder)):
            examined += 1
            full = os.path.join(folder, name)
            isdir = os.path.isdir(full) and not os.path.islink(full)
            if (p['file_type'] == 'file' and isdir) or (p['file_type'] == 'directory' and not isdir):
                continue
            if name.startswith('.') and not p['hidden']:
                continue
            files.append({'filename': name, 'path': full, 'isdir': isdir, 'islnk': os.path.islink(full),
                          'exists': True, 'size': 0 if isdir else os.lstat(full).st_size})
    mod.exit_json(changed=False, files=files, examined=examined, matched=len(files))


if __name__ == '__main__':
    main()
