# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered backend ``supervisor``: supervisord over XML-RPC (UNIX socket or HTTP)."""

from __future__ import annotations

import base64
import configparser
import http.client
import os
import socket
import xmlrpc.client

from ansible_collections.clinops.upgrade.plugins.module_utils.service.backend import Backend


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
