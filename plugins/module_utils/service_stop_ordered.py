# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The whole of service_stop_ordered: argument spec, input checks, ordering, the backends and the task itself.

The pure parts (:func:`argument_spec`, :func:`check_params`, :func:`plan`) are shared by the module
and by its action plugin, which drives the same order through ansible.windows on Windows hosts.

:func:`module_kwargs` and :func:`run` are the module: ``run(AnsibleModule(**module_kwargs()))``.  Other modules
(such as upgrade_cutover) call :func:`run` in their own process with an object offering the same few members
of AnsibleModule (``params``, ``check_mode``, ``_diff``, ``fail_json``, ``exit_json``, ``warn``, ``run_command``,
``get_bin_path``); :func:`run` keeps no state between calls, and its ``fail_json``/``exit_json`` may raise any
exception (BaseException included) - nothing here catches it.
"""

from __future__ import annotations

import base64
import configparser
import http.client
import math
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import tempfile
import time
import xmlrpc.client

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils import dicom as _dicom
from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError,
    check_connection_params,
    connect,
    database_argument_spec,
    describe_error,
    require_driver,
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


def module_kwargs():
    """Keyword arguments for ``AnsibleModule(**module_kwargs())``; fresh objects on every call."""
    return dict(argument_spec=argument_spec(), mutually_exclusive=list(MUTUALLY_EXCLUSIVE), supports_check_mode=True)


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


# ---------------------------------------------------------------- constants of the POSIX backends

FIRST_PAUSE = 0.05  # seconds before the second look at a stopping or starting service
QUICK_PAUSE = 0.1   # then a look every QUICK_PAUSE seconds during the first QUICK_FOR seconds
QUICK_FOR = 3.0
PROBE_EVERY = 1.0   # at most one connection to a service's port per this many seconds (a probe, or a C-ECHO)
DICOM_TIMEOUT = 5.0  # connect, ACSE and DIMSE timeout of the C-ECHO that judges a DICOM service
KILL_WAIT = 10.0
SYSTEMD_DIR = '/run/systemd/system'
INIT_D = '/etc/init.d'


# ---------------------------------------------------------------- the process table

def pid_alive(pid):
    """Whether ``pid`` is a live process (a zombie is not)."""
    if not pid or pid <= 0:
        return False
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
            stat = handle.read()
    except OSError:
        return False
    state = stat[stat.rfind(')') + 2:stat.rfind(')') + 3]
    return state not in ('Z', 'X', '')


def read_pidfile(path):
    """The pid in ``path``, or None when the file is missing or holds no number."""
    if not path:
        return None
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            text = handle.read().strip().split()
    except OSError:
        return None
    try:
        return int(text[0]) if text else None
    except ValueError:
        return None


def _ancestors():
    pids = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open('/proc/%d/stat' % pid, encoding='utf-8', errors='replace') as handle:
                stat = handle.read()
            pid = int(stat[stat.rfind(')') + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def pattern_pids(regex):
    """Live pids whose command line matches ``regex`` (this module and its ancestors excluded)."""
    skip = _ancestors()
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                cmdline = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
        except OSError:
            continue
        if cmdline and regex.search(cmdline) and pid_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def port_open(host, port, timeout=1.0):
    """Whether something accepts TCP connections on ``host:port`` (see :func:`probe_port`)."""
    return probe_port(host, port, timeout) is None


def probe_port(host, port, timeout=1.0):
    """None when something accepts a TCP connection on ``host:port``, else the OSError that says why not.

    The probe sends nothing and is closed at once with a reset (SO_LINGER 0), so the server sees the connection
    end, not a client that has not spoken yet: a DICOM server counts such a client as an association in the
    making until its ACSE timeout. Callers go through :meth:`Context.port_answers`, which probes a port at most
    once per :data:`PROBE_EVERY` seconds.
    """
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    sock.close()
    return None


def echo_once(svc, timeout=DICOM_TIMEOUT):
    """One C-ECHO to a DICOM service's port: None when it answered with success, else why not (in words)."""
    peer = dict(_dicom.DEFAULTS, host=svc['host'], port=svc['port'], called_aet=svc['dicom']['called_aet'],
                calling_aet=svc['dicom']['calling_aet'], connect_timeout=timeout, acse_timeout=timeout,
                dimse_timeout=timeout, tls=None)
    _dicom.quiet_pynetdicom()
    answer = _dicom.PeerEcho(peer).once()
    if answer['outcome'] == 'success':
        return None
    return 'no C-ECHO on port %s: %s (%s)' % (svc['port'], answer['outcome'], answer['reason'])


def port_holders(port):
    """Pids of the processes listening on TCP ``port`` on this host (read from /proc/net/tcp*)."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table, encoding='ascii') as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == '0A' and int(fields[1].rsplit(':', 1)[1], 16) == port:
                inodes.add('socket:[%s]' % fields[9])
    pids = set()
    if not inodes:
        return []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir('/proc/%s/fd' % entry):
                if os.readlink('/proc/%s/fd/%s' % (entry, fd)) in inodes:
                    pids.add(int(entry))
                    break
        except OSError:
            continue
    return sorted(pids)


# ---------------------------------------------------------------- backends

class Backend:
    """How one service is asked to stop and start, and what the backend says about it."""

    name = None

    def __init__(self, module, svc, ctx):
        self.module = module
        self.svc = svc
        self.ctx = ctx

    def check(self):
        """A message when the service cannot be controlled this way, else None."""
        return None

    def running(self):
        """The backend's own view: True running, False stopped, None no view of its own."""
        return None

    def up(self):
        """Whether the backend reports the service fully started (None: no view of its own)."""
        return None

    def pids(self):
        """Pids the backend knows for the service."""
        return []

    def describe(self):
        """The backend state in words for failure messages."""
        return ''

    def start_failed(self):
        """A message when the backend knows the start failed for good."""
        return None

    def request_stop(self, seconds):
        raise NotImplementedError

    def request_start(self, seconds):
        raise NotImplementedError

    def kill(self):
        """Backend-side SIGKILL; returns True when the backend did it."""
        return False


class SupervisorBackend(Backend):
    name = 'supervisor'

    def _info(self):
        return self.ctx.supervisor().info(self.svc['name'])

    def check(self):
        if self.svc['name'] not in self.ctx.supervisor_names():
            return 'supervisord at %s has no program %s (it knows: %s)' % (
                self.ctx.supervisor().url, self.svc['name'], ', '.join(sorted(self.ctx.supervisor_names())) or 'none')
        return None

    def running(self):
        return self._info()['statename'] in Supervisor.RUNNING

    def up(self):
        return self._info()['statename'] == 'RUNNING'

    def pids(self):
        pid = self._info().get('pid')
        return [pid] if pid else []

    def describe(self):
        return 'supervisord state %s' % self._info()['statename']

    def start_failed(self):
        info = self._info()
        if info['statename'] in ('FATAL', 'EXITED'):
            return 'supervisord state %s: %s' % (info['statename'], info.get('spawnerr') or info.get('description') or '')
        return None

    def request_stop(self, seconds):
        self.ctx.supervisor().stop(self.svc['name'])

    def request_start(self, seconds):
        self.ctx.supervisor().start(self.svc['name'])

    def kill(self):
        self.ctx.supervisor().kill(self.svc['name'])
        return True


class SystemdBackend(Backend):
    name = 'systemd'

    def _show(self):
        rc, out, err = self.module.run_command([self.ctx.bin('systemctl'), 'show', '--property=LoadState,ActiveState,SubState,MainPID',
                                                '--', self.svc['name']])
        if rc != 0:
            raise BackendError('systemctl show %s failed: %s' % (self.svc['name'], (err or out).strip()))
        props = {}
        for line in out.splitlines():
            key, dummy, value = line.partition('=')
            props[key] = value
        return props

    def check(self):
        if self._show().get('LoadState') in ('not-found', ''):
            return 'systemd has no unit %s' % self.svc['name']
        return None

    def running(self):
        return self._show().get('ActiveState') in ('active', 'activating', 'deactivating', 'reloading', 'refreshing')

    def up(self):
        return self._show().get('ActiveState') == 'active'

    def pids(self):
        pid = int(self._show().get('MainPID') or 0)
        return [pid] if pid else []

    def describe(self):
        props = self._show()
        return 'systemd state %s (%s)' % (props.get('ActiveState'), props.get('SubState'))

    def start_failed(self):
        if self._show().get('ActiveState') == 'failed':
            return 'systemd state failed'
        return None

    def _systemctl(self, *args):
        rc, out, err = self.module.run_command([self.ctx.bin('systemctl')] + list(args) + ['--', self.svc['name']])
        if rc != 0:
            raise BackendError('systemctl %s %s failed: %s' % (' '.join(args), self.svc['name'], (err or out).strip()))

    def request_stop(self, seconds):
        self._systemctl('stop', '--no-block')

    def request_start(self, seconds):
        self._systemctl('start', '--no-block')

    def kill(self):
        self._systemctl('kill', '--signal=SIGKILL')
        return True


class SysvinitBackend(Backend):
    name = 'sysvinit'

    def _argv(self, action):
        service = self.ctx.bin('service', required=False)
        if service:
            return [service, self.svc['name'], action]
        return [os.path.join(INIT_D, self.svc['name']), action]

    def check(self):
        if not os.path.exists(os.path.join(INIT_D, self.svc['name'])):
            return 'there is no init script %s' % os.path.join(INIT_D, self.svc['name'])
        return None

    def _status(self):
        rc, dummy_out, dummy_err = self.module.run_command(self._argv('status'))
        return rc

    def running(self):
        return self._status() == 0

    def up(self):
        return self._status() == 0

    def describe(self):
        return '%s status exit code %s' % (self.svc['name'], self._status())

    def request_stop(self, seconds):
        rc, out = run_with_deadline(self._argv('stop'), seconds)
        if rc not in (0, None):
            raise BackendError('%s stop exited with %s: %s' % (' '.join(self._argv('stop')), rc, out[-500:]))

    def request_start(self, seconds):
        rc, out = run_with_deadline(self._argv('start'), seconds)
        if rc is None:
            raise BackendError('%s did not return within %s s' % (' '.join(self._argv('start')), seconds))
        if rc != 0:
            raise BackendError('%s exited with %s: %s' % (' '.join(self._argv('start')), rc, out[-500:]))


class ScriptBackend(Backend):
    name = 'script'

    def __init__(self, module, svc, ctx):
        super().__init__(module, svc, ctx)
        self._proc = None

    def request_stop(self, seconds):
        if self.svc['stop_command']:
            argv = shlex.split(self.svc['stop_command'])
            rc, out = run_with_deadline(argv, seconds)
            if rc not in (0, None):
                raise BackendError('stop_command %s exited with %s: %s' % (self.svc['stop_command'], rc, out[-500:]))
            return
        for pid in self.ctx.known_pids(self.svc):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def request_start(self, seconds):
        argv = shlex.split(self.svc['start_command'])
        try:
            self._proc = spawn_detached(argv)
        except OSError as exc:
            raise BackendError('cannot run start_command %s: %s' % (self.svc['start_command'], to_native(exc))) from exc

    def start_failed(self):
        if self._proc is not None:
            rc = self._proc.poll()
            if rc not in (None, 0):
                return 'start_command %s exited with %s' % (self.svc['start_command'], rc)
        return None

    def describe(self):
        return ''


class BackendError(Exception):
    """A backend call failed; the message names the service and the cause."""


BACKEND_CLASSES = {
    'supervisor': SupervisorBackend,
    'systemd': SystemdBackend,
    'sysvinit': SysvinitBackend,
    'script': ScriptBackend,
}


# ---------------------------------------------------------------- the task

class Context:
    """What the services of one task share: the module, the supervisord client, found programs."""

    def __init__(self, module):
        self.module = module
        self._supervisor = None
        self._supervisor_names = None
        self._bins = {}
        self.remembered = {}
        self._looks = {}   # (host, port) -> (monotonic time, what, answer) of the last probe or C-ECHO

    def _gently(self, what, svc, look, meanwhile):
        """``look()``'s answer for the service's port, asked at most once per PROBE_EVERY seconds: sooner, the last
        answer of the same kind, or ``meanwhile`` when the last look was of the other kind (a probe, a C-ECHO)."""
        key = (svc['host'], svc['port'])
        last = self._looks.get(key)
        now = time.monotonic()
        if last is not None and now - last[0] < PROBE_EVERY:
            return last[2] if last[1] == what else meanwhile
        answer = look()
        self._looks[key] = (now, what, answer)
        return answer

    def port_answers(self, svc):
        """Whether the service's port accepts connections (one bare probe per PROBE_EVERY seconds at most)."""
        return self._gently('tcp', svc, lambda: port_open(svc['host'], svc['port']), True)

    def dicom_problem(self, svc):
        """Why the DICOM service does not answer a C-ECHO yet, or None (one C-ECHO per PROBE_EVERY seconds at most)."""
        return self._gently('dicom', svc, lambda: echo_once(svc), 'no C-ECHO on port %s tried yet' % svc['port'])

    def bin(self, name, required=True):
        if name not in self._bins:
            self._bins[name] = self.module.get_bin_path(name, required=required)
        return self._bins[name]

    def has_supervisor(self):
        params = self.module.params
        return bool(params['supervisor_config'] or params['supervisor_url'])

    def supervisor(self):
        if self._supervisor is None:
            params = self.module.params
            username, password = params['supervisor_username'], params['supervisor_password']
            if params['supervisor_url']:
                url = params['supervisor_url']
            else:
                url, conf_user, conf_password = read_supervisor_config(params['supervisor_config'])
                username = username or conf_user
                password = password if password is not None else conf_password
            self._supervisor = Supervisor(url, username, password)
        return self._supervisor

    def supervisor_names(self):
        if self._supervisor_names is None:
            self._supervisor_names = self.supervisor().names()
        return self._supervisor_names

    def pidfile(self, svc):
        if svc['pidfile']:
            return svc['pidfile']
        if svc['_backend'] == 'sysvinit':
            guess = '/run/%s.pid' % svc['name']
            return guess if os.path.exists(guess) else None
        return None

    def known_pids(self, svc):
        """Live pids of the service: the backend's, the pidfile's, the pattern's, and those seen before."""
        pids = set(self.remembered.get(svc['name'], ()))
        try:
            pids.update(svc['_impl'].pids())
        except (SupervisorError, BackendError):
            pass
        pid = read_pidfile(self.pidfile(svc))
        if pid:
            pids.add(pid)
        if svc.get('_regex') is not None:
            pids.update(pattern_pids(svc['_regex']))
        return sorted(p for p in pids if pid_alive(p))

    def remember(self, svc):
        self.remembered.setdefault(svc['name'], set()).update(self.known_pids(svc))


def resolve_backend(ctx, svc):
    """The backend for ``svc``: its own setting, or what auto finds; raises BackendError when none fits."""
    backend = svc['backend']
    if backend != 'auto':
        return backend
    if ctx.has_supervisor() and svc['name'] in ctx.supervisor_names():
        return 'supervisor'
    if svc['start_command'] or svc['stop_command']:
        return 'script'
    if os.path.isdir(SYSTEMD_DIR) and ctx.bin('systemctl', required=False):
        svc['_backend'] = 'systemd'
        if SystemdBackend(ctx.module, svc, ctx).check() is None:
            return 'systemd'
    if os.path.exists(os.path.join(INIT_D, svc['name'])):
        return 'sysvinit'
    if svc['pidfile'] or svc['pattern']:
        return 'script'
    where = []
    if ctx.has_supervisor():
        where.append('not a program of supervisord at %s' % ctx.supervisor().url)
    where.append('no systemd unit' if os.path.isdir(SYSTEMD_DIR) else 'no systemd on this host')
    where.append('no %s' % os.path.join(INIT_D, svc['name']))
    where.append('no start_command, stop_command, pidfile or pattern')
    raise BackendError('cannot find service %s: %s' % (svc['name'], '; '.join(where)))


def is_running(ctx, svc):
    view = svc['_impl'].running()
    if view:
        return True
    if ctx.known_pids(svc):
        return True
    if view is None and not (svc['pidfile'] or svc['pattern']) and svc['port']:
        return ctx.port_answers(svc)
    return False


def what_is_alive(ctx, svc, port_too=False):
    """Words for what keeps the service up, or '' when it is really down.

    The process manager and the process table are asked first; the port is probed only when they say the service
    is gone (to find a stray listener) or with ``port_too`` (for the failure message), at most once per
    PROBE_EVERY seconds.
    """
    parts = []
    try:
        if svc['_impl'].running():
            parts.append(svc['_impl'].describe())
    except (SupervisorError, BackendError) as exc:
        parts.append(to_native(exc))
    pids = ctx.known_pids(svc)
    if pids:
        parts.append('pid %s alive' % ', '.join(str(p) for p in pids))
    if (port_too or not parts) and svc['port'] and ctx.port_answers(svc):
        holders = port_holders(svc['port'])
        parts.append('port %s open%s' % (svc['port'], ' (listening: pid %s)' % ', '.join(str(p) for p in holders) if holders else ''))
    return ', '.join(p for p in parts if p)


def what_is_missing(ctx, svc):
    """Words for what is not up yet, or '' when the service is fully started.

    The process manager, the pidfile and the process table are asked first; only when they say the service runs
    is its port looked at, at most once per PROBE_EVERY seconds: a DICOM service (``dicom``) by a C-ECHO, which
    is released properly, any other by a bare probe closed at once.
    """
    missing = []
    impl = svc['_impl']
    up = impl.up()
    if up is False:
        missing.append(impl.describe() or 'not running')
    if svc['pidfile']:
        pid = read_pidfile(svc['pidfile'])
        if not pid_alive(pid):
            missing.append('no live pid in %s' % svc['pidfile'])
    if svc.get('_regex') is not None and not pattern_pids(svc['_regex']):
        missing.append('no process matches %s' % svc['pattern'])
    if missing or not svc['port']:
        return ', '.join(missing)
    if svc.get('dicom') is not None:
        return ctx.dicom_problem(svc) or ''
    return '' if ctx.port_answers(svc) else 'port %s closed' % svc['port']


def kill_all(ctx, svc):
    done = []
    try:
        if svc['_impl'].kill():
            done.append(svc['_backend'])
    except (SupervisorError, BackendError):
        pass
    for pid in ctx.known_pids(svc):
        try:
            os.kill(pid, signal.SIGKILL)
            done.append('pid %d' % pid)
        except OSError:
            pass
    return done


def pauses(interval, first=FIRST_PAUSE, quick=QUICK_PAUSE, quick_for=QUICK_FOR):
    """The pauses between two looks at a service: ``first``, then ``quick`` seconds for the first ``quick_for``
    seconds (most services stop or start within them, and each look is cheap), then doubling up to ``interval``."""
    waited = 0.0
    pause = min(first, interval)
    while True:
        yield pause
        waited += pause
        pause = min(pause * 2, interval if waited >= quick_for else min(quick, interval))


def wait_until_gone(ctx, svc, deadline, interval):
    """Poll until nothing of ``svc`` is alive or ``deadline`` passes; returns what is still alive."""
    alive = what_is_alive(ctx, svc)
    pause = pauses(interval)
    while alive and time.monotonic() < deadline:
        time.sleep(min(next(pause), max(deadline - time.monotonic(), 0.01)))
        alive = what_is_alive(ctx, svc)
    return alive


def stop_one(module, ctx, svc, entry):
    """Stop ``svc`` and wait until it is really down; returns an error message or None."""
    started = time.monotonic()
    timeout = svc['timeout']
    deadline = started + timeout
    interval = module.params['poll_interval']
    ctx.remember(svc)
    try:
        svc['_impl'].request_stop(max(deadline - time.monotonic(), 0.1))
    except (SupervisorError, BackendError) as exc:
        entry['action'] = 'failed'
        entry['seconds'] = round(time.monotonic() - started, 3)
        return 'service %s: %s' % (svc['name'], to_native(exc))
    alive = wait_until_gone(ctx, svc, deadline, interval)
    action = 'stopped'
    if alive and svc['kill_after']:
        killed = kill_all(ctx, svc)
        alive = wait_until_gone(ctx, svc, time.monotonic() + KILL_WAIT, min(interval, 0.2))
        action = 'killed'
        if alive:
            alive = '%s (%s s after SIGKILL to %s)' % (what_is_alive(ctx, svc, port_too=True) or alive, int(KILL_WAIT),
                                                       ', '.join(killed) or 'nothing known')
    entry['seconds'] = round(time.monotonic() - started, 3)
    if alive:
        entry['action'] = 'failed'
        if action != 'killed':  # the port too, for the message (the last look skipped it while a process lived)
            alive = what_is_alive(ctx, svc, port_too=True) or alive
        return 'service %s did not stop within %s s: %s' % (svc['name'], timeout, alive)
    entry['action'] = action
    return None


def start_one(module, ctx, svc, entry):
    """Start ``svc`` and wait until it is up (port open); returns an error message or None."""
    started = time.monotonic()
    timeout = svc['timeout']
    deadline = started + timeout
    interval = module.params['poll_interval']
    try:
        svc['_impl'].request_start(max(deadline - time.monotonic(), 0.1))
        missing = what_is_missing(ctx, svc)
        failed = None
        pause = pauses(interval)
        while missing and time.monotonic() < deadline:
            time.sleep(min(next(pause), max(deadline - time.monotonic(), 0.01)))
            missing = what_is_missing(ctx, svc)
            failed = svc['_impl'].start_failed() if missing else None
            if failed:
                break
    except (SupervisorError, BackendError) as exc:
        entry['action'] = 'failed'
        entry['seconds'] = round(time.monotonic() - started, 3)
        return 'service %s: %s' % (svc['name'], to_native(exc))
    entry['seconds'] = round(entry.get('seconds', 0) + time.monotonic() - started, 3)
    if missing:
        entry['action'] = 'failed'
        if failed:
            return 'service %s failed to start: %s' % (svc['name'], failed)
        return 'service %s did not start within %s s: %s' % (svc['name'], timeout, missing)
    entry['action'] = 'restarted' if entry['action'] in ('stopped', 'killed') else 'started'
    return None


def drain_count(module, drain):
    if drain['command']:
        rc, out, err = module.run_command(shlex.split(drain['command']))
        if rc != 0:
            module.fail_json(msg='drain.command %s exited with %s before anything was stopped: %s' % (
                drain['command'], rc, (err or out).strip()[-500:]))
        count = parse_count(out)
        if count is None:
            module.fail_json(msg='drain.command %s printed no number before anything was stopped: %r' % (drain['command'], out[-200:]))
        return count
    conn = None
    row = None
    try:
        conn = connect(drain['connection'], autocommit=True)
        cur = conn.cursor()
        cur.execute(drain['query'])
        row = cur.fetchone()
        cur.close()
    except DatabaseError as exc:
        module.fail_json(msg='drain.query: %s; nothing was stopped' % to_native(exc))
    except Exception as exc:  # pylint: disable=broad-except  # drivers raise their own hierarchies
        module.fail_json(msg='drain.query failed before anything was stopped: %s' % describe_error(exc))
    finally:
        if conn is not None:
            conn.close()
    try:
        return int(row[0])
    except (TypeError, ValueError, IndexError):
        module.fail_json(msg='drain.query returned %r, not a count; nothing was stopped' % (row,))


def run_drain(module, drain, result):
    info = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False)
    result['drain'] = info
    started = time.monotonic()
    deadline = started + drain['max_wait']
    info['count'] = drain_count(module, drain)
    info['polls'] = 1
    if info['count'] > 0 and drain['broadcast']:
        text = drain_message(drain['broadcast'], deadline - time.monotonic(), info['count'])
        wall = module.get_bin_path('wall', required=True)
        rc, out, err = module.run_command([wall, text])
        if rc != 0:
            module.warn('wall exited with %s: %s' % (rc, (err or out).strip()))
        info['message_sent'] = True
    while info['count'] > 0 and time.monotonic() < deadline:
        time.sleep(min(drain['interval'], max(deadline - time.monotonic(), 0.01)))
        info['count'] = drain_count(module, drain)
        info['polls'] += 1
    info['waited'] = round(time.monotonic() - started, 3)
    if info['count'] > 0:
        info['timed_out'] = True
        if drain['on_timeout'] == 'fail':
            module.fail_json(msg='drain: the count is still %s after %s s (max_wait); nothing was stopped' % (
                info['count'], drain['max_wait']), **result)
        module.warn('drain: the count is still %s after %s s; stopping anyway (on_timeout=proceed)' % (
            info['count'], drain['max_wait']))


def run(module):
    """The module's whole behaviour on ``module`` (an AnsibleModule or an object with the same few members).

    Ends in ``module.exit_json(**result)`` or ``module.fail_json(msg=..., **result)``.  Everything lives in locals
    and in one :class:`Context`, so a second call in the same process starts afresh.
    """
    params = module.params
    errors = check_params(params)
    if errors:
        module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
    drain = params['drain']
    if drain and drain['query']:
        require_driver(module, drain['connection']['engine'])
    if not _dicom.HAS_PYNETDICOM and any(s.get('dicom') is not None for s in params['services']):
        module.fail_json(msg='services with dicom are judged by a C-ECHO, which needs pynetdicom for the Python that '
                             'runs the modules on this host; nothing was stopped', exception=_dicom.PYNETDICOM_IMPORT_ERROR)

    ctx = Context(module)
    services = [dict(svc) for svc in params['services']]
    stop_order, start_order = plan(services, params['state'], params['reverse'], params['only'])
    scope = [s for s in services if params['only'] is None or s['name'] in params['only']]
    errors = []
    try:
        for svc in scope:
            svc['_regex'] = re.compile(svc['pattern']) if svc['pattern'] else None
            svc['_backend'] = resolve_backend(ctx, svc)
            svc['_impl'] = BACKEND_CLASSES[svc['_backend']](module, svc, ctx)
            msg = svc['_impl'].check()
            if msg:
                errors.append(msg)
        if errors:
            module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
        for svc in scope:
            svc['_before'] = is_running(ctx, svc)
    except (SupervisorError, BackendError) as exc:
        module.fail_json(msg='%s; nothing was stopped' % to_native(exc))

    entries = {}
    result = dict(changed=False, services=[], order=[],
                  previously_running=[s['name'] for s in scope if s['_before']])
    for svc in scope:
        entries[svc['name']] = dict(name=svc['name'], backend=svc['_backend'],
                                    before='running' if svc['_before'] else 'stopped', action='none', seconds=0.0)
    result['services'] = [entries[s['name']] for s in scope]

    def finish(failure=None):
        if module._diff:
            before = ''.join('%s: %s\n' % (s['name'], entries[s['name']]['before']) for s in scope)
            after = []
            for svc in scope:
                action = entries[svc['name']]['action']
                state = entries[svc['name']]['before']
                if action in ('stopped', 'killed'):
                    state = 'stopped'
                elif action in ('started', 'restarted'):
                    state = 'running'
                after.append('%s: %s\n' % (svc['name'], state))
            result['diff'] = dict(before=before, after=''.join(after), before_header='services', after_header='services')
        if failure:
            module.fail_json(msg=failure, **result)
        module.exit_json(**result)

    to_stop = [s for s in stop_order if s['_before']]
    if drain and to_stop:
        if module.check_mode:
            result['drain'] = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False, skipped='check mode')
        else:
            run_drain(module, drain, result)
    elif drain:
        result['drain'] = dict(count=None, polls=0, waited=0.0, timed_out=False, message_sent=False,
                               skipped='no service in scope is running')

    for index, svc in enumerate(to_stop):
        entry = entries[svc['name']]
        result['order'].append(svc['name'])
        result['changed'] = True
        if module.check_mode:
            entry['action'] = 'stopped'
            continue
        failure = stop_one(module, ctx, svc, entry)
        if failure:
            rest = [s['name'] for s in to_stop[index + 1:]]
            if rest:
                failure += '; not touched: %s' % ', '.join(rest)
            finish(failure)

    for index, svc in enumerate(start_order):
        entry = entries[svc['name']]
        if module.check_mode:
            running = svc['_before'] and entry['action'] == 'none'
        else:
            try:
                running = entry['action'] == 'none' and is_running(ctx, svc)
            except (SupervisorError, BackendError) as exc:
                finish('service %s: %s' % (svc['name'], to_native(exc)))
        if running:
            continue
        result['order'].append(svc['name'])
        result['changed'] = True
        if module.check_mode:
            entry['action'] = 'restarted' if entry['action'] in ('stopped', 'killed') else 'started'
            continue
        failure = start_one(module, ctx, svc, entry)
        if failure:
            rest = [s['name'] for s in start_order[index + 1:]]
            if rest:
                failure += '; not started: %s' % ', '.join(rest)
            finish(failure)
    finish()
