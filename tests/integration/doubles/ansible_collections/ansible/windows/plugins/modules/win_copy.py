# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import os
import shutil

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def main():
    mod = module('win_copy')
    p = mod.params
    mode = p.get('_copy_mode') or 'single'
    if mode not in ('single', 'remote') or p['content'] is not None:
        mod.fail_json(msg='the double copies one file (single, remote_src) as clinops.upgrade asks')
    src, dest = p['src'], p['dest']
    if not os.path.exists(src):
        mod.fail_json(msg='Cannot copy src file: %s as it does not exist' % src)
    if os.path.isdir(src):
        mod.fail_json(msg='the double copies files only')
    if os.path.isdir(dest):
        dest = os.path.join(dest, p.get('_original_basename') or os.path.basename(src))
    if mod.check_mode:
        mod.exit_json(changed=True, dest=dest)
    tmp = dest + '.win_copy.tmp'
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    mod.exit_json(changed=True, dest=dest, src=src)


if __name__ == '__main__':
    main()
