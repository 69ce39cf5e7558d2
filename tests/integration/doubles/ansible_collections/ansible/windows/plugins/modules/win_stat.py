# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import hashlib
import os

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def main():
    mod = module('win_stat')
    path = mod.params['path']
    follow = mod.params['follow']
    if not os.path.lexists(path):
        mod.exit_json(changed=False, stat={'exists': False})
    islnk = os.path.islink(path)
    st = os.stat(path) if follow else os.lstat(path)
    isdir = os.path.isdir(path) if (islnk or follow) else os.path.isdir(path)
    info = {'exists': True, 'isdir': isdir, 'isreg': os.path.isfile(path) and not isdir, 'islnk': islnk,
            'isjunction': False, 'isshared': False, 'size': st.st_size, 'path': path,
            'filename': os.path.basename(path.rstrip('/')), 'lastwritetime': st.st_mtime}
    if mod.params['get_checksum'] and info['isreg']:
        with open(path, 'rb') as handle:
            info['checksum'] = hashlib.new(mod.params['checksum_algorithm'], handle.read()).hexdigest()
    if islnk:
        info['lnk_target'] = os.readlink(path)
        info['lnk_source'] = os.path.realpath(path)
    mod.exit_json(changed=False, stat=info)


if __name__ == '__main__':
    main()
