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
            starting, it must accept connections (with O(services[].dicom), answer a C-ECHO) before the next one is
            started.
          - The port is looked at only when the process manager (and the pidfile or pattern) say the service runs,
            at most once a second; a probe sends nothing and is closed at once, so a server does not count it as a
            pending connection (a DICOM server would, until its ACSE timeout, and turn real associations away).
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
      dicom:
        description:
          - The service is a DICOM node; while it starts it is judged by a C-ECHO to O(services[].host):O(services[].port)
            (at most one a second, each association released), not by bare TCP probes, which a DICOM server counts
            against its association limit. Needs O(services[].port) and pynetdicom.
        type: dict
        suboptions:
          called_aet:
            description: The service's AE title.
            type: str
            default: ANY-SCP
          calling_aet:
            description: Our AE title.
            type: str
            default: CLINOPS_UPG
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
      - The longest pause, in seconds, between two looks at a stopping or starting service. The module looks after
        0.05 seconds, then every 0.1 seconds for 3 seconds, then doubles the pause up to this, so that a quick service
        is seen at once and a slow one is not polled hard.
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
          - For V(mssql) it runs through C(sqlcmd) on the host (found in PATH), prefixed with C(SET NOCOUNT ON;) and
            C(USE [database];); a SQL login's password reaches C(sqlcmd) in C(SQLCMDPASSWORD), never on its command line.
          - Not supported on Windows hosts.
        type: str
      connection:
        description:
          - Database connection for O(drain.query), with the keys of the collection's database options.
          - Engines V(postgresql), V(mysql), V(sqlite), V(firebird) and V(mssql) are supported.
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
          login_instance:
            description:
              - SQL Server named instance (V(mssql) only); give O(drain.connection.login_port) instead for a fixed port.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clinops.upgrade.plugins.module_utils.service.task import module_kwargs, run


def main():
    run(AnsibleModule(**module_kwargs()))


if __name__ == '__main__':
    main()
