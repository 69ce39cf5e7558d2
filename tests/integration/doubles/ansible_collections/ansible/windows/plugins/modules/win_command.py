# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import os
import shlex
import signal
import subprocess

from ansible_collections.ansible.windows.plugins.module_utils.double import module, service_state, supervisorctl


def main():
    mod = module('win_command')
    p = mod.params
    argv = p['argv'] or shlex.split(p['cmd'] or p['_raw_params'] or '')
    if not argv:
        mod.fail_json(msg='no command given')
    exe = argv[0].lower()
    if exe == 'sc.exe' and len(argv) == 3 and argv[1] == 'stop':
        found = service_state(argv[2])
        # like the real module, a non-zero exit code is a failed task (with its rc)
        if found is None:
            mod.fail_json(msg='non-zero return code', rc=1060, stdout='[SC] OpenService FAILED 1060', stderr='', cmd=' '.join(argv))
        if found['state'] == 'stopped':
            mod.fail_json(msg='non-zero return code', rc=1062, stdout='[SC] ControlService FAILED 1062', stderr='', cmd=' '.join(argv))
        rc, out = supervisorctl(found['config'], 'stop', found['name'])
        if rc != 0:
            mod.fail_json(msg='non-zero return code', rc=1, stdout=out, stderr='', cmd=' '.join(argv))
        mod.exit_json(changed=True, rc=0, stdout=out, stderr='', cmd=' '.join(argv))
    if exe == 'taskkill.exe' and '/PID' in argv:
        pid = int(argv[argv.index('/PID') + 1])
        try:
            os.kill(pid, signal.SIGKILL)
            mod.exit_json(changed=True, rc=0, stdout='SUCCESS', stderr='', cmd=' '.join(argv))
        except OSError as exc:
            mod.fail_json(msg='non-zero return code', rc=128, stdout='', stderr=str(exc), cmd=' '.join(argv))
    proc = subprocess.run(argv, cwd=p['chdir'] or None, capture_output=True, text=True, check=False)
    result = dict(changed=True, rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, cmd=' '.join(argv))
    if proc.returncode != 0:
        mod.fail_json(msg='non-zero return code', **result)
    mod.exit_json(**result)


if __name__ == '__main__':
    main()
