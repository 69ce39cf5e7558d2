# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

from ansible_collections.ansible.windows.plugins.module_utils.double import module, service_state, supervisorctl


def main():
    mod = module('win_service')
    p = mod.params
    if p['start_mode'] or p['dependencies'] or p['path'] or p['username']:
        mod.fail_json(msg='the double changes only the state of an existing service')
    found = service_state(p['name'])
    if found is None:
        mod.fail_json(msg='Service %s not found' % p['name'])
    wanted = p['state']
    if wanted is None or (wanted == 'started' and found['state'] == 'started') or (wanted == 'stopped' and found['state'] == 'stopped'):
        mod.exit_json(changed=False, name=found['name'], state=found['state'], exists=True)
    if mod.check_mode:
        mod.exit_json(changed=True, name=found['name'], state=wanted, exists=True)
    action = {'started': 'start', 'stopped': 'stop', 'restarted': 'restart'}.get(wanted)
    if action is None:
        mod.fail_json(msg='the double does not carry out state %s' % wanted)
    rc, out = supervisorctl(found['config'], action, found['name'])
    if rc != 0 or 'ERROR' in out:
        mod.fail_json(msg='Failed to %s service %s: %s' % (action, found['name'], out.strip()))
    mod.exit_json(changed=True, name=found['name'], state=service_state(p['name'])['state'], exists=True)


if __name__ == '__main__':
    main()
