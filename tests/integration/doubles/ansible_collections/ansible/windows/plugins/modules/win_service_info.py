# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

from ansible_collections.ansible.windows.plugins.module_utils.double import module, service_state


def main():
    mod = module('win_service_info')
    found = service_state(mod.params['name']) if mod.params['name'] else None
    services = [dict((k, v) for k, v in found.items() if k != 'config')] if found else []
    mod.exit_json(changed=False, exists=bool(services), services=services)


if __name__ == '__main__':
    main()
