#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: service_stop_ordered
short_description: Stop a product's services in the vendor's order, wait until each is really down, start them back in reverse
version_added: 0.1.0
description:
  - Stops the services of a product in the order its vendor prescribes (PMOD - DICOM servers, then transaction servers,
    then license servers), waits until each one is really down (the backend says stopped, the process is gone, the
    port is closed) before the next one is touched, and starts them the other way round.
  - A service that does not stop within its O(services[].timeout) fails the task and the services after it are not
    touched, so nothing is stopped under a live dependent. The failure names the service and what was still alive
    (pids, ports). O(services[].kill_after) escalates to C(SIGKILL) first.
  - Before the first stop, O(drain) can wait until users have logged off or background tasks have ended
    (ConAktiv, KSAMU), counted by a command or an SQL query, with a message broadcast with C(wall).
  - Backends - supervisord (over its XML-RPC interface), systemd (C(systemctl)), SysV init scripts (C(service)), and
    servers run from scripts (O(services[].start_command), O(services[].stop_command), a pidfile or a process pattern).
  - On Windows hosts the action plugin of the same name drives the same order through M(ansible.windows.win_service_info),
    C(sc.exe stop) (M(ansible.windows.win_command)), M(ansible.windows.win_wait_for) and M(ansible.windows.win_service),
    see the notes.
author:
  - clinops.upgrade contributors (@clinops)
extends_documentation_fragment:
  - clinops.upgrade.attributes
attributes:
  check_mode:
    support: full
    details: Reads the state of every service and reports what would stop or start, in which order; runs no drain command.
  diff_mode:
    support: full
    details: The running state of each service before and after.
  platform:
    support: full
    platforms: posix, windows
    details: Windows hosts through the action plugin and the ansible.windows collection.
options:
  services:
    description:
      - The services in stop order (the vendor's order). Starting goes the other way round unless O(reverse=false).
      - Names must be unique. All items are checked (backend found, program known, options valid) before anything is
        stopped.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The service name - the supervisord program (C(name) or C(group:name)), the systemd unit, the init script in
            C(/etc/init.d), the Windows service name, or a label for a O(services[].backend=script) server.
        type: str
        required: true
      backend:
        description:
          - How to control the service.
          - V(auto) picks, in this order, V(supervisor) when O(supervisor_config) or O(supervisor_url) is given and
            supervisord knows the program; V(script) when O(services[].start_command) or O(services[].stop_command) is
            given; V(systemd) when C(/run/systemd/system) exists and the unit is known; V(sysvinit) when
            C(/etc/init.d/NAME) exists; V(script) when a pidfile or pattern is given. Otherwise the task fails before
            anything is stopped.
          - V(windows) is the Windows service control manager, used by the action plugin on Windows hosts (where V(auto)
            means V(windows) too). On other hosts V(windows) is refused.
        type: str
        default: auto
        choices: [auto, systemd, sysvinit, supervisor, script, windows]
      timeout:
        description:
          - Seconds to wait for the service to be really down (stopping) or up (starting), including its port.
          - Negative values are refused before anything is stopped.
        type: int
        default: 60
      port:
        description:
          - TCP port of the service. When stopping, it must be closed before the next service is touched; when
            starting, it must accept connections before the next one is started.
        type: int
      host:
        description:
          - Address to probe O(services[].port) on.
        type: str
        default: 127.0.0.1
      pidfile:
        description:
          - File holding the pid of the server. The service is down only when that process is gone (a zombie counts as
            gone). For V(sysvinit), C(/run/NAME.pid) is read when it exists and this is unset.
        type: path
      pattern:
        description:
          - Python regular expression searched in the command lines of the process table (C(/proc/*/cmdline), arguments
            joined by spaces). The service is down only when no process matches.
        type: str
      start_command:
        description:
          - Command that starts a O(services[].backend=script) server, such as PMOD's generated start scripts. Split like
            a shell would, run without a shell (use C(/bin/sh -c '...') for shell features) in a new session, with its
            output discarded. It may stay in the foreground (it is left running) or daemonize and exit 0; a non-zero
            exit fails the task.
        type: str
      stop_command:
        description:
          - Command that stops a O(services[].backend=script) server. It must finish within O(services[].timeout).
          - Unset means sending C(SIGTERM) to the processes of O(services[].pidfile) and O(services[].pattern).
        type: str
      kill_after:
        description:
          - When the service is still alive after O(services[].timeout), send C(SIGKILL) to every process known to belong
            to it (through supervisord, C(systemctl kill), the pidfile and the pattern; a forced process stop on Windows)
            and wait up to 10 more seconds, instead of failing at once.
        type: bool
        default: false
  state:
    description:
      - V(stopped) stops in list order; V(started) starts in reverse list order (list order with O(reverse=false));
        V(restarted) stops in list order, then starts every service in scope in the start order.
    type: str
    default: stopped
    choices: [stopped, started, restarted]
  reverse:
    description:
      - Start in the reverse of the list order.
    type: bool
    default: true
  only:
    description:
      - Restrict the task to these service names (they must appear in O(services)); the order still comes from
        O(services). Feed back RV(previously_running) of the stop so the start brings back only what was running.
      - An empty list means no service.
    type: list
    elements: str
  supervisor_config:
    description:
      - Path of C(supervisord.conf); the server URL and credentials are read from it like C(supervisorctl -c) does
        (C([supervisorctl] serverurl), else C([unix_http_server] file), else C([inet_http_server] port)).
    type: path
  supervisor_url:
    description:
      - URL of supervisord's XML-RPC server, C(unix:///path/to/supervisor.sock) or C(http://127.0.0.1:9001).
    type: str
  supervisor_username:
    description:
      - User for supervisord's HTTP authentication (overrides the one in O(supervisor_config)).
    type: str
  supervisor_password:
    description:
      - Password of O(supervisor_username).
    type: str
  poll_interval:
    description:
      - Seconds between two looks at a stopping or starting service.
    type: float
    default: 0.5
  drain:
    description:
      - Before the first stop, wait until nobody uses the product - poll a count of logged-in users or running tasks until
        it is 0 or O(drain.max_wait) seconds have passed.
      - Runs only when a service in scope is running and not in check mode.
    type: dict
    suboptions:
      command:
        description:
          - Command printing the count (the first integer of its output is used). Split like a shell would and run
            without a shell. A non-zero exit fails the task before anything is stopped.
          - Exactly one of O(drain.command) and O(drain.query).
        type: str
      query:
        description:
          - SQL query whose first column of the first row is the count, run on O(drain.connection).
          - Not supported on Windows hosts.
        type: str
      connection:
        description:
          - Database connection for O(drain.query), with the keys of the collection's database options.
          - Engines V(postgresql), V(mysql), V(sqlite) and V(firebird) are supported.
        type: dict
        suboptions:
          engine:
            description:
              - The database engine.
            type: str
            required: true
            choices: [postgresql, mysql, sqlite, firebird, files, mssql]
          database:
            description:
              - Name of the database on the server.
            type: str
          login_host:
            description:
              - Host of the database server. Unset means the local socket or embedded access.
            type: str
          login_port:
            description:
              - TCP port of the database server. Unset means the engine's default.
            type: int
          login_user:
            description:
              - User to connect as.
            type: str
          login_password:
            description:
              - Password of O(drain.connection.login_user); never returned.
            type: str
          login_unix_socket:
            description:
              - Folder of the PostgreSQL socket, or path of the MariaDB/MySQL socket file.
            type: str
          path:
            description:
              - The database file (V(sqlite), V(firebird)).
            type: path
          connect_timeout:
            description:
              - Seconds to wait for the database server to accept a connection.
            type: int
            default: 10
      max_wait:
        description:
          - Seconds to wait for the count to reach 0.
        type: int
        default: 600
      interval:
        description:
          - Seconds between two polls of the count.
        type: int
        default: 10
      on_timeout:
        description:
          - What to do when the count is still above 0 after O(drain.max_wait) - V(fail) the task with nothing stopped,
            or V(proceed) with the stop (with a warning).
        type: str
        default: fail
        choices: [fail, proceed]
      broadcast:
        description:
          - Message broadcast once, when the first poll finds users, with C(wall) on Linux and C(msg.exe *) on Windows.
          - C({minutes}) is replaced by the minutes left until the stop and C({count}) by the count; without either,
            C( (services stop in N minutes)) is appended.
        type: str
notes:
  - The Windows path (action plugin) is tested only by the module calls it makes, with M(ansible.windows.win_service_info),
    M(ansible.windows.win_command), M(ansible.windows.win_wait_for) and M(ansible.windows.win_service) mocked; it has not
    been run against a real Windows host, since PowerShell cannot run where this collection is tested.
  - On Windows the stop control is sent with C(sc.exe stop) and the state is polled with
    M(ansible.windows.win_service_info), because M(ansible.windows.win_service) waits for a stop without a time limit;
    starting uses M(ansible.windows.win_service) with O(state=started), which waits until the service runs.
  - C(wall) reaches only users logged in on terminals of this host; clients of the product need the product's own
    message channel.
  - Processes left as zombies (whose parent does not reap them) count as gone.
seealso:
  - module: ansible.builtin.systemd_service
  - module: community.general.supervisorctl
  - module: ansible.windows.win_service
"""

EXAMPLES = r"""
- name: Stop the PMOD servers in the vendor's order (DICOM, transaction, license)
  clinops.upgrade.service_stop_ordered:
    supervisor_config: /etc/supervisor/supervisord.conf
    services:
      - name: pmod-dicom
        port: 104
        timeout: 120
      - name: pmod-ts
        port: 8100
        kill_after: true
      - name: pmod-ls
        port: 27000
    state: stopped
  register: pmod_stop

- name: Bring back what was running, license server first
  clinops.upgrade.service_stop_ordered:
    supervisor_config: /etc/supervisor/supervisord.conf
    services: "{{ pmod_services }}"
    only: "{{ pmod_stop.previously_running }}"
    state: started

- name: Stop ConAktiv once users have logged off, at most 15 minutes, telling them
  clinops.upgrade.service_stop_ordered:
    services:
      - name: conaktiv
        start_command: /opt/conaktiv/start.sh
        pidfile: /opt/conaktiv/server.pid
        port: 8080
    drain:
      command: /opt/conaktiv/bin/count-sessions
      interval: 30
      max_wait: 900
      on_timeout: proceed
      broadcast: "ConAktiv stops for an update in {minutes} minutes - please save and log off."

- name: Stop KSAMU after its background tasks have finished
  clinops.upgrade.service_stop_ordered:
    services:
      - name: ksamu-threads
      - name: ksamu-app
        port: 8443
    drain:
      query: "SELECT count(*) FROM task_queue WHERE state = 'running'"
      connection:
        engine: postgresql
        database: ksamu
        login_user: ksamu
        login_password: "{{ ksamu_db_password }}"
      max_wait: 1800

- name: Stop the ImageServer services on Windows (through the action plugin)
  clinops.upgrade.service_stop_ordered:
    services:
      - name: ShredHostService
        timeout: 120
      - name: ImageServerWebService
        port: 80
        kill_after: true
"""

RETURN = r"""
services:
  description: One entry per service in scope, in list order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The service name.
      type: str
      sample: pmod-ts
    backend:
      description: The backend used (after V(auto) was resolved).
      type: str
      sample: supervisor
    before:
      description: V(running) or V(stopped) before the task.
      type: str
      sample: running
    action:
      description:
        - What was done (or would be done in check mode) - V(stopped), V(killed) (stopped only by the C(SIGKILL)
          escalation), V(started), V(restarted), V(none), or V(failed).
      type: str
      sample: stopped
    seconds:
      description: Seconds spent on this service (0 in check mode).
      type: float
      sample: 1.52
  sample:
    - {name: pmod-dicom, backend: supervisor, before: running, action: stopped, seconds: 1.52}
    - {name: pmod-ts, backend: supervisor, before: running, action: stopped, seconds: 2.01}
previously_running:
  description: Names of the services in scope that were running before the task, in list order; feed it to O(only).
  returned: always
  type: list
  elements: str
  sample: [pmod-dicom, pmod-ts, pmod-ls]
order:
  description:
    - Names in the order they were (or in check mode would be) stopped or started; with O(state=restarted) the stops,
      then the starts.
  returned: always
  type: list
  elements: str
  sample: [pmod-dicom, pmod-ts, pmod-ls]
drain:
  description: What the drain wait saw.
  returned: when O(drain) is set
  type: dict
  contains:
    count:
      description: The last count read (null when the drain did not run).
      type: int
    polls:
      description: How many times the count was read.
      type: int
    waited:
      description: Seconds spent waiting.
      type: float
    timed_out:
      description: Whether O(drain.max_wait) passed with the count above 0.
      type: bool
    message_sent:
      description: Whether O(drain.broadcast) was broadcast.
      type: bool
    skipped:
      description: Why the drain did not run (check mode, nothing running), if it did not.
      type: str
  sample: {count: 0, polls: 3, waited: 20.0, timed_out: false, message_sent: true}
"""

import os
import re
import shlex
import signal
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.module_utils.database import (
    DatabaseError,
    connect,
    describe_error,
    require_driver,
)
from ansible_collections.clinops.upgrade.plugins.module_utils.service_stop_ordered import (
    MUTUALLY_EXCLUSIVE,
    Supervisor,
    SupervisorError,
    argument_spec,
    check_params,
    drain_message,
    parse_count,
    plan,
    read_supervisor_config,
    run_with_deadline,
    spawn_detached,
)

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
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


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
        return port_open(svc['host'], svc['port'])
    return False


def what_is_alive(ctx, svc):
    """Words for what keeps the service up, or '' when it is really down."""
    parts = []
    try:
        if svc['_impl'].running():
            parts.append(svc['_impl'].describe())
    except (SupervisorError, BackendError) as exc:
        parts.append(to_native(exc))
    pids = ctx.known_pids(svc)
    if pids:
        parts.append('pid %s alive' % ', '.join(str(p) for p in pids))
    if svc['port'] and port_open(svc['host'], svc['port']):
        holders = port_holders(svc['port'])
        parts.append('port %s open%s' % (svc['port'], ' (listening: pid %s)' % ', '.join(str(p) for p in holders) if holders else ''))
    return ', '.join(p for p in parts if p)


def what_is_missing(ctx, svc):
    """Words for what is not up yet, or '' when the service is fully started."""
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
    if svc['port'] and not port_open(svc['host'], svc['port']):
        missing.append('port %s closed' % svc['port'])
    return ', '.join(missing)


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


def wait_until_gone(ctx, svc, deadline, interval):
    """Poll until nothing of ``svc`` is alive or ``deadline`` passes; returns what is still alive."""
    alive = what_is_alive(ctx, svc)
    while alive and time.monotonic() < deadline:
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.01)))
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
            alive = '%s (%s s after SIGKILL to %s)' % (alive, int(KILL_WAIT), ', '.join(killed) or 'nothing known')
    entry['seconds'] = round(time.monotonic() - started, 3)
    if alive:
        entry['action'] = 'failed'
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
        while missing and time.monotonic() < deadline:
            time.sleep(min(interval, max(deadline - time.monotonic(), 0.01)))
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


def main():
    module = AnsibleModule(argument_spec=argument_spec(), mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    params = module.params
    errors = check_params(params)
    if errors:
        module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
    drain = params['drain']
    if drain and drain['query']:
        require_driver(module, drain['connection']['engine'])

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


if __name__ == '__main__':
    main()
