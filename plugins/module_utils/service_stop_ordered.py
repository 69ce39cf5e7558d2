# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument spec, input checks, ordering and the supervisord client of service_stop_ordered.

The pure parts (:func:`argument_spec`, :func:`check_params`, :func:`plan`) are shared by the module
and by its action plugin, which drives the same order through ansible.windows on Windows hosts.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import xmlrpc.client

from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    check_connection_params,
    database_argument_spec,
)

BACKENDS = ('auto', 'systemd', 'sysvinit', 'supervisor', 'script', 'windows')
DRAIN_ENGINES = ('postgresql', 'mysql', 'sqlite', 'firebird')


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


# ---------------------------------------------------------------- processes with a time limit / detached

def run_with_deadline(argv, seconds):
    """Run ``argv`` in its own session, waiting at most ``seconds``: ``(rc, output)``; rc None on timeout.

    AnsibleModule.run_command has no time limit; init scripts and stop commands can hang.  The output goes to a
    temporary file, not a pipe, so a daemon that keeps the descriptors open cannot hold the module.
    """
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            return 127, str(exc)
        try:
            rc = proc.wait(timeout=max(seconds, 0.1))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            rc = None
        output.seek(0)
        return rc, output.read()[-4000:].decode('utf-8', 'replace').strip()


def spawn_detached(argv):
    """Start ``argv`` in a new session with no descriptors of ours, and do not wait for it (a server's start script).

    AnsibleModule.run_command waits for the program; a start script that stays in the foreground would hold the task.
    """
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True)


# ---------------------------------------------------------------- supervisord over XML-RPC

class SupervisorError(Exception):
    """supervisord could not be reached or refused a call; the message says which."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """HTTP or unix-socket transport with basic authentication and a timeout."""

    def __init__(self, socket_path=None, username=None, password=None, timeout=10.0):
        super().__init__()
        self._socket_path = socket_path
        self._timeout = timeout
        self._auth = None
        if username:
            token = base64.b64encode(('%s:%s' % (username, password or '')).encode('utf-8')).decode('ascii')
            self._auth = 'Basic ' + token

    def make_connection(self, host):
        if self._socket_path:
            return _UnixHTTPConnection(self._socket_path, self._timeout)
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn

    def send_headers(self, connection, headers):
        if self._auth:
            connection.putheader('Authorization', self._auth)
        super().send_headers(connection, headers)


def read_supervisor_config(path):
    """``(server_url, username, password)`` from a supervisord.conf, as supervisorctl would use them."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=(';', '#'), strict=False)
    try:
        with open(path, encoding='utf-8') as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as exc:
        raise SupervisorError('cannot read supervisor_config %s: %s' % (path, exc)) from exc
    here = os.path.dirname(os.path.abspath(path))

    def get(section, key):
        if parser.has_option(section, key):
            value = parser.get(section, key).strip()
            return value.replace('%(here)s', here)
        return None

    url = get('supervisorctl', 'serverurl')
    username = get('supervisorctl', 'username')
    password = get('supervisorctl', 'password')
    if not url:
        if parser.has_section('unix_http_server') and get('unix_http_server', 'file'):
            url = 'unix://' + get('unix_http_server', 'file')
            username = username or get('unix_http_server', 'username')
            password = password or get('unix_http_server', 'password')
        elif parser.has_section('inet_http_server') and get('inet_http_server', 'port'):
            port = get('inet_http_server', 'port')
            host, dummy, port = port.rpartition(':')
            url = 'http://%s:%s' % (host if host not in ('', '*') else '127.0.0.1', port)
            username = username or get('inet_http_server', 'username')
            password = password or get('inet_http_server', 'password')
        else:
            raise SupervisorError('supervisor_config %s has no [unix_http_server] file, [inet_http_server] port '
                                  'or [supervisorctl] serverurl' % path)
    return url, username, password


class Supervisor:
    """A few calls of supervisord's XML-RPC interface (supervisor.* namespace)."""

    RUNNING = ('RUNNING', 'STARTING', 'BACKOFF', 'STOPPING')
    DOWN = ('STOPPED', 'EXITED', 'FATAL', 'UNKNOWN')

    def __init__(self, url, username=None, password=None, timeout=10.0):
        self.url = url
        if url.startswith('unix://'):
            transport = _Transport(socket_path=url[len('unix://'):], username=username, password=password,
                                   timeout=timeout)
            endpoint = 'http://localhost/RPC2'
        elif url.startswith(('http://', 'https://')):
            transport = _Transport(username=username, password=password, timeout=timeout)
            endpoint = url.rstrip('/') + ('' if url.rstrip('/').endswith('/RPC2') else '/RPC2')
        else:
            raise SupervisorError('supervisor url %s is neither unix://PATH nor http://HOST:PORT' % url)
        self._proxy = xmlrpc.client.ServerProxy(endpoint, transport=transport, allow_none=True)

    def _call(self, method, *args):
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault:
            raise
        except (OSError, xmlrpc.client.ProtocolError, http.client.HTTPException) as exc:
            raise SupervisorError('cannot talk to supervisord at %s: %s' % (self.url, exc)) from exc

    def state(self):
        return self._call('getState')

    def names(self):
        """Every program name supervisord knows, both ``group:name`` and, for solo programs, ``name``."""
        names = set()
        for info in self._call('getAllProcessInfo'):
            names.add('%s:%s' % (info['group'], info['name']))
            if info['group'] == info['name']:
                names.add(info['name'])
        return names

    def info(self, name):
        return self._call('getProcessInfo', name)

    def stop(self, name):
        try:
            self._call('stopProcess', name, False)
        except xmlrpc.client.Fault as fault:
            if 'NOT_RUNNING' not in fault.faultString:
                raise SupervisorError('supervisord refused to stop %s: %s' % (name, fault.faultString)) from fault

    def start(self, name):
        try:
            self._call('startProcess', name, False)
        except xmlrpc.client.Fault as fault:
            if 'ALREADY_STARTED' not in fault.faultString:
                raise SupervisorError('supervisord refused to start %s: %s' % (name, fault.faultString)) from fault

    def kill(self, name):
        try:
            self._call('signalProcess', name, 'KILL')
        except xmlrpc.client.Fault as fault:
            if 'NOT_RUNNING' not in fault.faultString:
                raise SupervisorError('supervisord refused to signal %s: %s' % (name, fault.faultString)) from fault
