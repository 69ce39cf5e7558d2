# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import base64
import os

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def main():
    mod = module('slurp')
    src = mod.params['src']
    if not os.path.isfile(src):
        mod.fail_json(msg='Path %s is not found' % src if not os.path.exists(src) else 'Path %s is a directory' % src)
    with open(src, 'rb') as handle:
        mod.exit_json(changed=False, content=base64.b64encode(handle.read()).decode('ascii'), encoding='base64', source=src)


if __name__ == '__main__':
    main()
