# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tell the logged-on users that the server stops, and wait until they logged off or the wait time passed.

The engine's ``users`` step (upgrade_cutover), before the stop, for products whose server keeps user sessions and
has its own admin commands (ConAktiv: a message on the server console and on every client; the stop once all users
logged off or the wait time passed). Everything product-specific is in the profile: the command that lists who is
logged on (one user a line), the command that shows a message to the server console and every session (an argument
containing ``{message}`` gets the text), the text (``{version}``, ``{minutes}``), the wait. The commands run through
the host interface (``host.run``), so a Windows host runs them too.
"""

from __future__ import annotations

import math
import time

from ansible_collections.clinops.upgrade.plugins.module_utils.host import StepFailed

ON_TIMEOUT = ('proceed', 'fail')


def argument_spec():
    """The keys of the engine's ``users`` option."""
    return dict(
        list_command=dict(type='list', elements='str', required=True),
        message_command=dict(type='list', elements='str'),
        text=dict(type='str', default=''),
        max_wait=dict(type='int', default=900),
        interval=dict(type='int', default=5),
        on_timeout=dict(type='str', default='proceed', choices=list(ON_TIMEOUT)),
        command_timeout=dict(type='int', default=60),
    )


def problems(users):
    errors = []
    if not users.get('list_command'):
        errors.append('users.list_command must give the command that lists the logged-on users')
    if users.get('message_command') and not any('{message}' in a for a in users['message_command']):
        errors.append('users.message_command needs an argument containing {message}')
    if users.get('text') and not users.get('message_command'):
        errors.append('users.text needs users.message_command, the command that shows it')
    for key, low in (('max_wait', 0), ('interval', 1), ('command_timeout', 1)):
        if users.get(key) is not None and users[key] < low:
            errors.append('users.%s must be %d or more' % (key, low))
    if users.get('on_timeout') not in (None,) + ON_TIMEOUT:
        errors.append('users.on_timeout must be one of %s' % ', '.join(ON_TIMEOUT))
    return errors


def _run(host, argv, cwd, timeout, what):
    result = host.run(argv, cwd=cwd, timeout=timeout)
    if result['rc'] != 0:
        raise StepFailed('users: %s %s exited with %s before anything was stopped: %s'
                         % (what, argv[0], result['rc'], (result['stderr'] or result['stdout']).strip()[-300:]))
    return result['stdout']


def logged_on(host, users, cwd):
    out = _run(host, users['list_command'], cwd, users.get('command_timeout') or 60, 'list_command')
    return [line.strip() for line in out.splitlines() if line.strip()]


def message_text(users, target, seconds_left):
    minutes = int(math.ceil(max(seconds_left, 0) / 60.0))
    return (users.get('text') or '').replace('{version}', target).replace('{minutes}', str(minutes))


def tell_and_wait(host, users, target, cwd, warn, clock=time.monotonic, sleep=time.sleep):
    """Message the server and every session, then poll who is logged on until nobody is or max_wait passed.

    Returns what the journal keeps: who was logged on when told, who still was at the stop, the seconds waited."""
    users = dict(argument_spec_defaults(), **dict((k, v) for k, v in users.items() if v is not None))
    started = clock()
    deadline = started + users['max_wait']
    names = logged_on(host, users, cwd)
    first = list(names)
    messaged = ''
    if users.get('message_command') and users.get('text'):
        # the server console gets it whether or not anybody is logged on (the vendor shows it on the server and the clients)
        messaged = message_text(users, target, users['max_wait'])
        argv = [a.replace('{message}', messaged) for a in users['message_command']]
        _run(host, argv, cwd, users['command_timeout'], 'message_command')
    polls = 1
    while names and clock() < deadline:
        sleep(min(users['interval'], max(deadline - clock(), 0.01)))
        names = logged_on(host, users, cwd)
        polls += 1
    waited = round(clock() - started, 3)
    data = dict(users_logged_on=first, users_still_logged_on=names, users_message=messaged, users_waited_s=waited,
                users_timed_out=bool(names), users_polls=polls)
    if names:
        if users['on_timeout'] == 'fail':
            raise StepFailed('users: still logged on after %ss (max_wait): %s; nothing was stopped'
                             % (users['max_wait'], ', '.join(names)), data)
        warn('users: still logged on after %ss, the server stops anyway (on_timeout=proceed): %s'
             % (users['max_wait'], ', '.join(names)))
    return data


def argument_spec_defaults():
    return dict((k, v.get('default')) for k, v in argument_spec().items())
