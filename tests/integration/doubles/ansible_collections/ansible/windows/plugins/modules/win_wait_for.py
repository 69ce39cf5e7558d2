# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import socket
import time

from ansible_collections.ansible.windows.plugins.module_utils.double import module


def is_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def main():
    mod = module('win_wait_for')
    p = mod.params
    if not p['port'] or p['path'] or p['regex']:
        mod.fail_json(msg='the double waits for a port only')
    host = p['host'] or '127.0.0.1'
    if not (host.startswith('127.') or host in ('localhost', '::1')):
        mod.fail_json(msg='the double contacts loopback addresses only')
    deadline = time.monotonic() + p['timeout']
    want_open = p['state'] in ('started', 'present')
    start = time.monotonic()
    while True:
        if is_open(host, p['port']) == want_open:
            mod.exit_json(changed=False, elapsed=round(time.monotonic() - start, 3))
        if time.monotonic() > deadline:
            mod.fail_json(msg='timeout while waiting for %s:%s to be %s' % (host, p['port'], p['state']),
                          elapsed=round(time.monotonic() - start, 3))
        time.sleep(max(p['sleep'], 0.2) if p['sleep'] else 0.5)


if __name__ == '__main__':
    main()
