# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import os
import shutil

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def main():
    mod = module('win_file')
    path, state = mod.params['path'], mod.params['state']
    changed = False
    if state == 'absent' and os.path.lexists(path):
        changed = True
        if not mod.check_mode:
            if os.path.islink(path) or not os.path.isdir(path):
                os.unlink(path)  # win_file deletes a link (reparse point) itself, never its target
            else:
                shutil.rmtree(path)
    elif state == 'directory':
        if os.path.lexists(path) and not os.path.isdir(path):
            mod.fail_json(msg='path %s is not a directory' % path)
        if not os.path.isdir(path):
            changed = True
            if not mod.check_mode:
                os.makedirs(path)
    elif state in ('file', 'touch'):
        if state == 'file' and not os.path.exists(path):
            mod.fail_json(msg='path %s will not be created' % path)
        if state == 'touch':
            changed = True
            if not mod.check_mode:
                with open(path, 'ab'):
                    os.utime(path)
    mod.exit_json(changed=changed)


if __name__ == '__main__':
    main()
