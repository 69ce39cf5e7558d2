# -*- coding: utf-8 -*-
# Test double (clinops.upgrade tests): the real module's documented options, acted out on the local machine.
from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import time
import zipfile

from ansible_collections.ansible.windows.plugins.module_utils.double import module, real_should_process_pattern


def write(p):
    import base64
    data = base64.b64decode(p['Content'])
    tmp = os.path.join(os.path.dirname(p['Path']), '.%s.%d.tmp' % (os.path.basename(p['Path']), os.getpid()))
    try:
        with open(tmp, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if data.startswith(b'#!'):
            os.chmod(tmp, 0o755)  # the lab's stand-in start scripts run on POSIX; Windows has no mode bits to set
        os.replace(tmp, p['Path'])
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return {'written': len(data)}


def rename(p):
    attempt, problem = 0, None
    while True:
        attempt += 1
        try:
            if os.path.lexists(p['Destination']):
                raise OSError('Cannot create a file when that file already exists: %s' % p['Destination'])
            os.rename(p['Source'], p['Destination'])
            return {'renamed': True, 'attempts': attempt, 'locked': None, 'message': None}
        except OSError as exc:
            problem = str(exc)
            if attempt >= int(p['Retries']):
                break
            time.sleep(int(p['DelayMs']) / 1000.0)
    return {'renamed': False, 'attempts': attempt, 'locked': None, 'message': problem}


def copy_tree(p):
    shutil.copytree(p['Source'], p['Destination'], symlinks=True)
    return {'copied': True}


def zip_list(p):
    with zipfile.ZipFile(p['Archive']) as zipped:
        return {'names': zipped.namelist()}


def zip_extract(p):
    root = os.path.abspath(p['Destination']).rstrip('/') + '/'
    wanted = set(p['Names'] or [])
    count = 0
    with zipfile.ZipFile(p['Archive']) as zipped:
        for info in zipped.infolist():
            if info.filename not in wanted:
                continue
            target = os.path.abspath(os.path.join(root, info.filename))
            if not (target + '/').startswith(root):
                raise ValueError('member %s leaves %s' % (info.filename, root))
            zipped.extract(info, root)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode)  # the lab's programs stay executable (Windows has no mode bits to lose)
            count += 1
    return {'extracted': count}


def run(p):
    try:
        proc = subprocess.run(p['Argv'], cwd=p['Chdir'] or None, capture_output=True, timeout=int(p['TimeoutMs']) / 1000.0,
                              check=False)
    except subprocess.TimeoutExpired:
        return {'timed_out': True, 'rc': None, 'stdout': '', 'stderr': ''}
    return {'timed_out': False, 'rc': proc.returncode, 'stdout': proc.stdout.decode('utf-8', 'replace'),
            'stderr': proc.stderr.decode('utf-8', 'replace')}


def free_space(p):
    info = os.statvfs(p['Path'])
    return {'free': info.f_bavail * info.f_frsize, 'drive': '/'}


def clock(p):
    del p
    now = datetime.datetime.now(datetime.timezone.utc)
    return {'utc': now.isoformat(timespec='milliseconds'), 'epoch': time.time(), 'timezone': 'UTC'}


SCRIPTS = dict(write=(write, False), rename=(rename, True), copy_tree=(copy_tree, True), zip_list=(zip_list, False),
               zip_extract=(zip_extract, True), run=(run, True), free_space=(free_space, False), clock=(clock, False))


def main():
    mod = module('win_powershell')
    script = mod.params['script'] or ''
    first = script.split('\n', 1)[0]
    name = first[len('# clinops.upgrade: '):].strip() if first.startswith('# clinops.upgrade: ') else None
    if name not in SCRIPTS or mod.params['path'] or mod.params['executable'] or mod.params['arguments']:
        mod.fail_json(msg='the test double carries out only the clinops.upgrade scripts, given inline with parameters')
    func, changes = SCRIPTS[name]
    if mod.check_mode and not real_should_process_pattern().search(script):
        # as the real module: a script that does not declare SupportsShouldProcess is not run in check mode
        mod.exit_json(changed=True, msg='skipped, running in check mode')
    if mod.check_mode and changes:
        # the real module would run it with -WhatIf, and these scripts change files through .NET calls, which ignore it
        mod.fail_json(msg='script %s changes the host but declares SupportsShouldProcess: it would run in check mode' % name)
    try:
        out = func(mod.params['parameters'] or {})
    except Exception as exc:  # pylint: disable=broad-except
        mod.fail_json(msg=str(exc), output=[], error=[{'message': str(exc)}])
    mod.exit_json(changed=changes, output=[out], error=[], result={}, host_out='', host_err='', information=[],
                  verbose=[], warning=[], debug=[])


if __name__ == '__main__':
    main()
