# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import os

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def entry(full):
    st = os.lstat(full)
    isdir = os.path.isdir(full) and not os.path.islink(full)
    found = {'filename': os.path.basename(full), 'path': full, 'isdir': isdir, 'islnk': os.path.islink(full),
             'isreg': os.path.isfile(full) and not os.path.islink(full), 'isjunction': False, 'exists': True,
             'size': 0 if isdir else st.st_size, 'lastwritetime': st.st_mtime}
    if found['islnk']:
        found['lnk_source'] = os.path.realpath(full)
        found['lnk_target'] = os.readlink(full)
    return found


def main():
    mod = module('win_find')
    p = mod.params
    if p['patterns'] or p['age'] or p['size'] or p['follow']:
        mod.fail_json(msg='the double lists folders without filters (what clinops.upgrade asks)')
    files = []
    examined = 0
    for folder in p['paths']:
        if not os.path.isdir(folder):
            mod.fail_json(msg="Argument path %s does not exist cannot get information on" % folder)
        for base, dirs, names in os.walk(folder):
            dirs.sort()
            for name in sorted(dirs + names):
                examined += 1
                full = os.path.join(base, name)
                found = entry(full)
                if (p['file_type'] == 'file' and found['isdir']) or (p['file_type'] == 'directory' and not found['isdir']):
                    continue
                if name.startswith('.') and not p['hidden']:
                    continue
                files.append(found)
            if not p['recurse']:
                break
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(base, d))]
    mod.exit_json(changed=False, files=files, examined=examined, matched=len(files))


if __name__ == '__main__':
    main()
