# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered's argument spec, input checks and ordering (pure; shared by the module and its
Windows action plugin), and the drain's message helpers.
"""

from __future__ import annotations

import math
import re

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom
from ansible_collections.clinops.upgrade.plugins.module_utils.database import check_connection_params, database_argument_spec
from ansible_collections.clinops.upgrade.plugins.module_utils.mssql import MssqlError, check_params as check_mssql_params


BACKENDS = ('auto', 'systemd', 'sysvinit', 'supervisor', 'script', 'windows')
DRAIN_ENGINES = ('postgresql', 'mysql', 'sqlite', 'firebird', 'mssql')


def service_argument_spec():
    """The suboptions of one item of ``services``."""
    return dict(
        name=dict(type='str', required=True),
        backend=dict(type='str', default='auto', choices=list(BACKENDS)),
        timeout=dict(type='int', default=60),
        port=dict(type='int'),
        host=dict(type='str', default='127.0.0.1'),
        pidfile=dict(type='path'),
        pattern=dict(type='str'),
        start_command=dict(type='str'),
        stop_command=dict(type='str'),
        kill_after=dict(type='bool', default=False),
        dicom=dict(type='dict', options=dicom_argument_spec()),
    )


def dicom_argument_spec():
    """The suboptions of ``services[].dicom``: the service is a DICOM node, judged by a C-ECHO on its port."""
    return dict(
        called_aet=dict(type='str', default='ANY-SCP'),
        calling_aet=dict(type='str', default='CLINOPS_UPG'),
    )


def drain_argument_spec():
    """The suboptions of ``drain``."""
    return dict(
        command=dict(type='str'),
        query=dict(type='str'),
        connection=dict(type='dict', options=database_argument_spec()),
        max_wait=dict(type='int', default=600),
        interval=dict(type='int', default=10),
        on_timeout=dict(type='str', default='fail', choices=['fail', 'proceed']),
        broadcast=dict(type='str'),
    )


def argument_spec():
    """The module's whole argument spec (also validated by the action plugin on Windows hosts)."""
    return dict(
        services=dict(type='list', elements='dict', required=True, options=service_argument_spec()),
        state=dict(type='str', default='stopped', choices=['stopped', 'started', 'restarted']),
        reverse=dict(type='bool', default=True),
        only=dict(type='list', elements='str'),
        supervisor_config=dict(type='path'),
        supervisor_url=dict(type='str'),
        supervisor_username=dict(type='str'),
        supervisor_password=dict(type='str', no_log=True),
        poll_interval=dict(type='float', default=0.5),
        drain=dict(type='dict', options=drain_argument_spec(),
                   mutually_exclusive=[('command', 'query')],
                   required_one_of=[('command', 'query')],
                   required_by={'query': 'connection'}),
    )


MUTUALLY_EXCLUSIVE = [('supervisor_config', 'supervisor_url')]


def check_params(params, windows=False):
    """Return a list of messages for input that cannot work; touches nothing."""
    errors = []
    services = params.get('services') or []
    if not services:
        errors.append('services is empty: give at least one service')
    seen = set()
    for index, svc in enumerate(services):
        name = (svc.get('name') or '').strip()
        label = 'services[%d] (%s)' % (index, name or 'no name')
        if not name:
            errors.append('%s: name is empty' % label)
            continue
        if name in seen:
            errors.append('duplicate service name %s: each service may appear once in services' % name)
        seen.add(name)
        timeout = svc.get('timeout')
        if timeout is not None and timeout < 0:
            errors.append('%s: timeout %s is negative; give the seconds to wait (0 or more)' % (label, timeout))
        port = svc.get('port')
        if port is not None and not 0 < port < 65536:
            errors.append('%s: port %s is out of range 1-65535' % (label, port))
        if svc.get('dicom') is not None:
            if not port:
                errors.append('%s: dicom needs port (the C-ECHO goes to host:port)' % label)
            for key in ('called_aet', 'calling_aet'):
                problem = _dicom.ae_title_error(svc['dicom'].get(key), 'dicom.' + key)
                if problem:
                    errors.append('%s: %s' % (label, problem))
            if windows:
                errors.append('%s: dicom is a POSIX option; on Windows the port is waited for' % label)
        if svc.get('pattern'):
            try:
                re.compile(svc['pattern'])
            except re.error as exc:
                errors.append('%s: pattern is not a valid regular expression: %s' % (label, exc))
        backend = svc.get('backend') or 'auto'
        if backend == 'windows' and not windows:
            errors.append('%s: backend windows works only on Windows hosts (the action plugin drives win_service there)' % label)
        if windows and backend not in ('auto', 'windows'):
            errors.append('%s: backend %s does not exist on a Windows host; use auto or windows' % (label, backend))
        if windows and (svc.get('pidfile') or svc.get('pattern') or svc.get('start_command') or svc.get('stop_command')):
            errors.append('%s: pidfile, pattern, start_command and stop_command are POSIX options; '
                          'on Windows the service control manager knows the process' % label)
        if backend == 'supervisor' and not (params.get('supervisor_config') or params.get('supervisor_url')):
            errors.append('%s: backend supervisor needs supervisor_config or supervisor_url' % label)
        if backend == 'script':
            if not (svc.get('stop_command') or svc.get('pidfile') or svc.get('pattern')):
                errors.append('%s: backend script needs stop_command, pidfile or pattern to stop the server' % label)
            if not (svc.get('pidfile') or svc.get('pattern') or svc.get('port')):
                errors.append('%s: backend script needs pidfile, pattern or port to know whether the server runs' % label)
            if params.get('state') in ('started', 'restarted') and not svc.get('start_command'):
                errors.append('%s: backend script needs start_command for state %s' % (label, params.get('state')))
    only = params.get('only')
    if only is not None:
        unknown = [n for n in only if n not in seen]
        if unknown:
            errors.append('only names services that are not in services: %s' % ', '.join(unknown))
    if params.get('poll_interval') is not None and params['poll_interval'] <= 0:
        errors.append('poll_interval must be positive')
    drain = params.get('drain')
    if drain:
        if drain.get('max_wait') is not None and drain['max_wait'] < 0:
            errors.append('drain.max_wait %s is negative' % drain['max_wait'])
        if drain.get('interval') is not None and drain['interval'] <= 0:
            errors.append('drain.interval must be positive')
        if drain.get('query'):
            if windows:
                errors.append('drain.query is not supported on Windows hosts; use drain.command')
            elif drain.get('connection'):
                msg = check_connection_params(drain['connection'], DRAIN_ENGINES)
                if msg:
                    errors.append('drain.connection: %s' % msg)
                elif drain['connection']['engine'] == 'mssql':
                    try:
                        check_mssql_params(drain['connection'])
                    except MssqlError as exc:
                        errors.append('drain.connection: %s' % exc)
                elif drain['connection'].get('login_instance'):
                    errors.append('drain.connection: login_instance applies to engine mssql only')
        if drain.get('command') is not None and not drain['command'].strip():
            errors.append('drain.command is empty')
    return errors


def plan(services, state, reverse=True, only=None):
    """The services in scope, in the order each phase handles them: ``(stop_order, start_order)``."""
    scope = [s for s in services if only is None or s['name'] in only]
    stop_order = list(scope) if state in ('stopped', 'restarted') else []
    start_order = []
    if state in ('started', 'restarted'):
        start_order = list(reversed(scope)) if reverse else list(scope)
    return stop_order, start_order


def parse_count(text):
    """The first integer in a drain command's output, or None."""
    match = re.search(r'-?\d+', text or '')
    return int(match.group(0)) if match else None


def drain_message(message, seconds_left, count):
    """The broadcast text: ``{minutes}`` and ``{count}`` are filled in, else the minutes are appended."""
    minutes = int(math.ceil(max(seconds_left, 0) / 60.0))
    if '{minutes}' in message or '{count}' in message:
        return message.replace('{minutes}', str(minutes)).replace('{count}', str(count))
    return '%s (services stop in %d minute%s)' % (message, minutes, '' if minutes == 1 else 's')
