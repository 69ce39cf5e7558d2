# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""service_stop_ordered: input checks, ordering, process-table helpers, supervisord config reading, the
module entry point on the systemd backend (systemctl replaced by a fake, since these hosts have no systemd), and
module_utils' module_kwargs()/run() driven in-process by a minimal AnsibleModule stand-in against real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.testing import patch_module_args

from ansible_collections.clinops.upgrade.plugins.module_utils.service import procs as service_procs
from ansible_collections.clinops.upgrade.plugins.module_utils.service import spec as service_spec
from ansible_collections.clinops.upgrade.plugins.module_utils.service import supervisor as service_supervisor
from ansible_collections.clinops.upgrade.plugins.module_utils.service import systemd as service_systemd
from ansible_collections.clinops.upgrade.plugins.module_utils.service import sysvinit as service_sysvinit
from ansible_collections.clinops.upgrade.plugins.module_utils.service import task as service_task
from ansible_collections.clinops.upgrade.plugins.modules import service_stop_ordered as mod


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


def svc(name, **kwargs):
    base = dict(name=name, backend='auto', timeout=60, port=None, host='127.0.0.1', pidfile=None, pattern=None,
                start_command=None, stop_command=None, kill_after=False)
    base.update(kwargs)
    return base


def params(services, **kwargs):
    base = dict(services=services, state='stopped', reverse=True, only=None, supervisor_config=None,
                supervisor_url=None, supervisor_username=None, supervisor_password=None, poll_interval=0.5, drain=None)
    base.update(kwargs)
    return base


# ---------------------------------------------------------------- input checks

@pytest.mark.parametrize('services, extra, expected', [
    ([svc('a'), svc('a')], {}, 'duplicate service name a'),
    ([svc('a', timeout=-1)], {}, 'timeout -1 is negative'),
    ([svc('a', port=70000)], {}, 'port 70000 is out of range'),
    ([svc('a', pattern='(')], {}, 'pattern is not a valid regular expression'),
    ([svc('a', backend='windows')], {}, 'backend windows works only on Windows hosts'),
    ([svc('a', backend='supervisor')], {}, 'needs supervisor_config or supervisor_url'),
    ([svc('a', backend='script', port=80)], {}, 'needs stop_command, pidfile or pattern'),
    ([svc('a', backend='script', stop_command='x')], {}, 'needs pidfile, pattern or port'),
    ([svc('a', backend='script', pidfile='/p')], {'state': 'started'}, 'needs start_command for state started'),
    ([svc('a')], {'only': ['a', 'b']}, 'not in services: b'),
    ([], {}, 'services is empty'),
    ([svc('a')], {'poll_interval': 0}, 'poll_interval must be positive'),
    ([svc('a', dicom=dict(called_aet='DS', calling_aet='ME'))], {}, 'dicom needs port'),
    ([svc('a', port=104, dicom=dict(called_aet='A' * 17, calling_aet='ME'))], {}, 'dicom.called_aet'),
    ([svc('a')], {'drain': dict(command='c', query=None, connection=None, max_wait=-1, interval=1,
                                on_timeout='fail', broadcast=None)}, 'drain.max_wait -1 is negative'),
    ([svc('a')], {'drain': dict(command=None, query='select 1', max_wait=1, interval=1, on_timeout='fail', broadcast=None,
                                connection=dict(engine='sqlite', path=None))}, 'engine sqlite needs path'),
])
def test_check_params_refuses(services, extra, expected):
    errors = service_spec.check_params(params(services, **extra))
    assert any(expected in e for e in errors), errors


def test_check_params_accepts_good_input():
    assert service_spec.check_params(params([svc('a', port=1, timeout=0), svc('b', backend='script', pidfile='/p')])) == []


def test_check_params_windows():
    errors = service_spec.check_params(params([svc('a', backend='sysvinit'), svc('b', pidfile='/x')]), windows=True)
    assert any('backend sysvinit does not exist on a Windows host' in e for e in errors)
    assert any('POSIX options' in e for e in errors)
    assert service_spec.check_params(params([svc('a', backend='windows'), svc('b')]), windows=True) == []


@pytest.mark.parametrize('state, reverse, only, stop, start', [
    ('stopped', True, None, ['a', 'b', 'c'], []),
    ('started', True, None, [], ['c', 'b', 'a']),
    ('started', False, None, [], ['a', 'b', 'c']),
    ('restarted', True, None, ['a', 'b', 'c'], ['c', 'b', 'a']),
    ('stopped', True, ['c', 'a'], ['a', 'c'], []),
    ('started', True, ['c', 'a'], [], ['c', 'a']),
    ('started', True, [], [], []),
])
def test_plan(state, reverse, only, stop, start):
    services = [svc('a'), svc('b'), svc('c')]
    stop_order, start_order = service_spec.plan(services, state, reverse, only)
    assert [s['name'] for s in stop_order] == stop
    assert [s['name'] for s in start_order] == start


@pytest.mark.parametrize('text, count', [('3 users', 3), ('count\n0\n', 0), ('', None), ('none', None), ('  12', 12)])
def test_parse_count(text, count):
    assert service_spec.parse_count(text) == count


def test_drain_message():
    assert service_spec.drain_message('Stop in {minutes} min, {count} users', 125, 4) == 'Stop in 3 min, 4 users'
    assert service_spec.drain_message('Update', 60, 1) == 'Update (services stop in 1 minute)'
    assert service_spec.drain_message('Update', 0, 1) == 'Update (services stop in 0 minutes)'


# ---------------------------------------------------------------- supervisord.conf

@pytest.mark.parametrize('body, url, user', [
    ('[unix_http_server]\nfile=%(here)s/s.sock\nusername=u\npassword=p\n', 'unix://{here}/s.sock', 'u'),
    ('[inet_http_server]\nport=127.0.0.1:9001\n', 'http://127.0.0.1:9001', None),
    ('[inet_http_server]\nport=*:9002\n', 'http://127.0.0.1:9002', None),
    ('[unix_http_server]\nfile=/x.sock\n[supervisorctl]\nserverurl=http://127.0.0.1:1 ; comment\nusername=z\n',
     'http://127.0.0.1:1', 'z'),
])
def test_read_supervisor_config(tmp_path, body, url, user):
    path = tmp_path / 'supervisord.conf'
    path.write_text(body)
    got_url, got_user, dummy = service_supervisor.read_supervisor_config(str(path))
    assert got_url == url.format(here=str(tmp_path))
    assert got_user == user


def test_read_supervisor_config_without_server(tmp_path):
    path = tmp_path / 'supervisord.conf'
    path.write_text('[supervisord]\nnodaemon=true\n')
    with pytest.raises(service_supervisor.SupervisorError, match='has no'):
        service_supervisor.read_supervisor_config(str(path))
    with pytest.raises(service_supervisor.SupervisorError, match='cannot read'):
        service_supervisor.read_supervisor_config(str(tmp_path / 'missing.conf'))


def test_supervisor_unreachable_socket(tmp_path):
    client = service_supervisor.Supervisor('unix://%s' % (tmp_path / 'none.sock'), timeout=1)
    with pytest.raises(service_supervisor.SupervisorError, match='cannot talk to supervisord'):
        client.names()
    with pytest.raises(service_supervisor.SupervisorError, match='neither'):
        service_supervisor.Supervisor('ftp://x')


# ---------------------------------------------------------------- the process table

def test_pid_alive_counts_zombies_as_gone():
    assert service_procs.pid_alive(os.getpid())
    assert not service_procs.pid_alive(0)
    assert not service_procs.pid_alive(2 ** 22 + 12345)
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    deadline = time.monotonic() + 10
    while service_procs.pid_alive(child.pid) and time.monotonic() < deadline:  # exits, stays a zombie until wait()
        time.sleep(0.05)
    assert os.path.exists('/proc/%d' % child.pid)
    assert not service_procs.pid_alive(child.pid)
    child.wait()


def test_read_pidfile(tmp_path):
    path = tmp_path / 'x.pid'
    assert service_procs.read_pidfile(str(path)) is None
    path.write_text('1234\n')
    assert service_procs.read_pidfile(str(path)) == 1234
    path.write_text('garbage')
    assert service_procs.read_pidfile(str(path)) is None
    assert service_procs.read_pidfile(None) is None


def spawn_with_marker(marker):
    """A sleeping child whose command line holds ``marker``, returned once /proc shows that command line.

    On this sandbox's kernel /proc/PID/cmdline of a freshly exec'd process can read empty for a moment.
    """
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', marker])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/cmdline' % child.pid, 'rb') as handle:
                if marker.encode() in handle.read():
                    break
        except OSError:
            pass
        time.sleep(0.01)
    return child


def test_pattern_pids_finds_a_process_but_not_this_one():
    marker = 'clinops-pattern-%d' % os.getpid()
    child = spawn_with_marker(marker)
    try:
        assert service_procs.pattern_pids(re.compile(re.escape(marker))) == [child.pid]
        assert os.getpid() not in service_procs.pattern_pids(re.compile('python|pytest'))
    finally:
        child.kill()
        child.wait()
    assert service_procs.pattern_pids(re.compile(re.escape(marker))) == []


def test_port_open_and_holders():
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    try:
        assert service_procs.port_open('127.0.0.1', port)
        assert os.getpid() in service_procs.port_holders(port)
    finally:
        srv.close()
    assert not service_procs.port_open('127.0.0.1', port)
    assert service_procs.port_holders(port) == []


def test_run_with_deadline():
    assert service_procs.run_with_deadline([sys.executable, '-c', 'print("hi")'], 10) == (0, 'hi')
    started = time.monotonic()
    rc, dummy = service_procs.run_with_deadline([sys.executable, '-c', 'import time; time.sleep(30)'], 0.5)
    assert rc is None and time.monotonic() - started < 10
    assert service_procs.run_with_deadline(['/nonexistent/program'], 1)[0] == 127


# ---------------------------------------------------------------- the entry point, systemd faked

class FakeSystemd:
    """Units with an ActiveState; ``stop --no-block`` takes ``polls`` looks to finish; ``hang`` units never stop."""

    def __init__(self, units, polls=2, hang=()):
        self.units = dict((name, dict(state=state, pid=1000 + i if state == 'active' else 0, left=0))
                          for i, (name, state) in enumerate(units.items()))
        self.polls = polls
        self.hang = set(hang)
        self.calls = []

    def run_command(self, argv, **kwargs):  # pylint: disable=unused-argument
        assert argv[0] == '/bin/systemctl', argv
        verb, name = argv[1], argv[-1]
        if verb != 'show':
            self.calls.append((verb, name) + tuple(a for a in argv[2:-2]))
        unit = self.units.get(name)
        if verb == 'show':
            if unit is None:
                return 0, 'LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n', ''
            if unit['state'] == 'deactivating' and name not in self.hang:
                unit['left'] -= 1
                if unit['left'] <= 0:
                    unit.update(state='inactive', pid=0)
            if unit['state'] == 'activating':
                unit.update(state='active', pid=4242)
            return 0, 'LoadState=loaded\nActiveState=%s\nSubState=x\nMainPID=%d\n' % (unit['state'], unit['pid']), ''
        if verb == 'stop':
            unit.update(state='deactivating', left=self.polls)
        elif verb == 'start':
            unit.update(state='activating')
        elif verb == 'kill':
            unit.update(state='inactive', pid=0)
        return 0, '', ''


@pytest.fixture
def fake_systemd(monkeypatch, tmp_path):
    def exit_json(self, **kwargs):  # pylint: disable=unused-argument
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):  # pylint: disable=unused-argument
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    (tmp_path / 'systemd').mkdir()
    monkeypatch.setattr(service_systemd, 'SYSTEMD_DIR', str(tmp_path / 'systemd'))
    monkeypatch.setattr(service_sysvinit, 'INIT_D', str(tmp_path / 'init.d'))
    monkeypatch.setattr(service_task, 'KILL_WAIT', 1.0)
    monkeypatch.setattr(service_procs, 'pid_alive', lambda pid: False)  # the fake MainPIDs are not real processes
    monkeypatch.setattr(basic.AnsibleModule, 'get_bin_path',
                        lambda self, name, required=False, opt_dirs=None: '/bin/%s' % name)
    holder = {}

    def install(fake):
        holder['fake'] = fake
        monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda self, argv, **kw: fake.run_command(argv, **kw))
        return fake
    return install


def run_module(args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        try:
            mod.main()
        except (ExitJson, FailJson) as exc:
            return exc.__class__, exc.args[0]
    raise AssertionError('the module neither exited nor failed')


UNITS = [{'name': 'pmod-dicom'}, {'name': 'pmod-ts'}, {'name': 'pmod-ls'}]


def test_systemd_stop_in_order(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active', 'pmod-ts': 'active', 'pmod-ls': 'active'}))
    kind, res = run_module({'services': UNITS, 'poll_interval': 0.01})
    assert kind is ExitJson, res
    assert res['changed'] and res['order'] == ['pmod-dicom', 'pmod-ts', 'pmod-ls']
    assert fake.calls == [('stop', 'pmod-dicom', '--no-block'), ('stop', 'pmod-ts', '--no-block'),
                          ('stop', 'pmod-ls', '--no-block')]
    assert [s['backend'] for s in res['services']] == ['systemd'] * 3
    assert all(u['state'] == 'inactive' for u in fake.units.values())


def test_systemd_check_mode_touches_nothing(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active', 'pmod-ts': 'inactive', 'pmod-ls': 'active'}))
    kind, res = run_module({'services': UNITS}, check_mode=True)
    assert kind is ExitJson and res['changed']
    assert res['order'] == ['pmod-dicom', 'pmod-ls']
    assert res['previously_running'] == ['pmod-dicom', 'pmod-ls']
    assert fake.calls == []


def test_systemd_idempotent(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'inactive', 'pmod-ts': 'failed', 'pmod-ls': 'inactive'}))
    kind, res = run_module({'services': UNITS})
    assert kind is ExitJson and not res['changed'] and res['order'] == []
    assert fake.calls == []


def test_systemd_hang_fails_and_leaves_later_units(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active', 'pmod-ts': 'active', 'pmod-ls': 'active'}, hang=['pmod-ts']))
    units = [dict(UNITS[0]), dict(UNITS[1], timeout=1), dict(UNITS[2])]
    kind, res = run_module({'services': units, 'poll_interval': 0.05})
    assert kind is FailJson, res
    assert 'service pmod-ts did not stop within 1 s' in res['msg'] and 'systemd state deactivating' in res['msg']
    assert 'not touched: pmod-ls' in res['msg']
    assert ('stop', 'pmod-ls', '--no-block') not in fake.calls
    assert fake.units['pmod-ls']['state'] == 'active'
    assert [s['action'] for s in res['services']] == ['stopped', 'failed', 'none']


def test_systemd_kill_after(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active'}, hang=['pmod-dicom']))
    kind, res = run_module({'services': [{'name': 'pmod-dicom', 'timeout': 0, 'kill_after': True}], 'poll_interval': 0.01})
    assert kind is ExitJson, res
    assert ('kill', 'pmod-dicom', '--signal=SIGKILL') in fake.calls
    assert res['services'][0]['action'] == 'killed'


def test_systemd_start_reverse_with_only(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'inactive', 'pmod-ts': 'inactive', 'pmod-ls': 'inactive'}))
    kind, res = run_module({'services': UNITS, 'state': 'started', 'only': ['pmod-dicom', 'pmod-ls'], 'poll_interval': 0.01})
    assert kind is ExitJson, res
    assert fake.calls == [('start', 'pmod-ls', '--no-block'), ('start', 'pmod-dicom', '--no-block')]
    assert res['order'] == ['pmod-ls', 'pmod-dicom']
    assert [s['name'] for s in res['services']] == ['pmod-dicom', 'pmod-ls']


@pytest.mark.parametrize('services, expected', [
    ([{'name': 'pmod-dicom'}, {'name': 'missing-unit'}], 'cannot find service missing-unit'),
    ([{'name': 'pmod-dicom'}, {'name': 'missing-unit', 'backend': 'systemd'}], 'systemd has no unit missing-unit'),
    ([{'name': 'pmod-dicom'}, {'name': 'pmod-dicom'}], 'duplicate service name pmod-dicom'),
    ([{'name': 'pmod-dicom', 'timeout': -3}], 'timeout -3 is negative'),
    ([{'name': 'pmod-dicom', 'backend': 'sysvinit'}], 'there is no init script'),
])
def test_bad_input_touches_nothing(fake_systemd, services, expected):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active'}))
    kind, res = run_module({'services': services})
    assert kind is FailJson
    assert expected in res['msg'] and 'nothing was stopped' in res['msg']
    assert fake.calls == []


def test_unknown_backend_is_refused_by_the_spec(fake_systemd):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active'}))
    kind, res = run_module({'services': [{'name': 'pmod-dicom', 'backend': 'upstart'}]})
    assert kind is FailJson and 'upstart' in res['msg']
    assert fake.calls == []


def test_drain_command_failure_stops_nothing(fake_systemd, monkeypatch):
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active'}))
    orig = fake.run_command

    def run_command(argv, **kwargs):
        if argv[0] == 'count-users':
            return 2, '', 'database down'
        return orig(argv, **kwargs)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda self, argv, **kw: run_command(argv, **kw))
    kind, res = run_module({'services': [{'name': 'pmod-dicom'}], 'drain': {'command': 'count-users'}})
    assert kind is FailJson and 'database down' in res['msg'] and 'before anything was stopped' in res['msg']
    assert fake.calls == []


def test_drain_sqlite_query(fake_systemd, tmp_path):
    db = str(tmp_path / 'sessions.db')
    conn = sqlite3.connect(db)
    conn.execute('CREATE TABLE sessions (user TEXT)')
    conn.commit()
    conn.close()
    fake = fake_systemd(FakeSystemd({'pmod-dicom': 'active'}))
    kind, res = run_module({'services': [{'name': 'pmod-dicom'}], 'poll_interval': 0.01,
                            'drain': {'query': 'SELECT count(*) FROM sessions', 'max_wait': 5,
                                      'connection': {'engine': 'sqlite', 'path': db}}})
    assert kind is ExitJson, res
    assert res['drain']['count'] == 0 and res['drain']['polls'] == 1 and not res['drain']['timed_out']
    assert fake.calls == [('stop', 'pmod-dicom', '--no-block')]


# ---------------------------------------------------------------- module_kwargs() / run() in-process

class Finished(BaseException):
    """What the in-process adapter raises from exit_json/fail_json: like SystemExit, not an Exception."""

    def __init__(self, failed, result):
        super().__init__(failed, result)
        self.failed = failed
        self.result = result


class InProcessModule:
    """The members of AnsibleModule that run() may use, and nothing else (any other attribute is an AttributeError)."""

    __slots__ = ('params', 'check_mode', '_diff', 'tmpdir', 'no_log_values', 'warnings', 'commands', 'cleanup_files')

    def __init__(self, args, check_mode=False, diff=False, tmpdir=None):
        spec = service_task.module_kwargs()
        assert spec.pop('supports_check_mode') is True
        validated = ArgumentSpecValidator(**spec).validate(args)
        assert not validated.error_messages, validated.error_messages
        self.params = validated.validated_parameters
        self.check_mode = check_mode
        self._diff = diff
        self.tmpdir = tmpdir
        self.no_log_values = set(validated._no_log_values)  # pylint: disable=protected-access
        self.warnings = []
        self.commands = []
        self.cleanup_files = []

    def exit_json(self, **kwargs):
        raise Finished(False, kwargs)

    def fail_json(self, msg, **kwargs):
        raise Finished(True, dict(kwargs, msg=msg))

    def warn(self, warning):
        self.warnings.append(warning)

    def run_command(self, args, **kwargs):  # pylint: disable=unused-argument
        self.commands.append(list(args))
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def get_bin_path(self, arg, required=False, opt_dirs=None):  # pylint: disable=unused-argument
        path = shutil.which(arg)
        if required and path is None:
            self.fail_json(msg='Failed to find required executable "%s"' % arg)
        return path

    def atomic_move(self, src, dest, **kwargs):  # pylint: disable=unused-argument
        os.replace(src, dest)

    def add_cleanup_file(self, path):
        self.cleanup_files.append(path)


def run_in_process(args, **kwargs):
    module = InProcessModule(args, **kwargs)
    try:
        service_task.run(module)
    except Finished as done:
        return done.failed, done.result, module
    raise AssertionError('run() neither exited nor failed')


def test_module_kwargs_builds_an_ansible_module_and_fresh_objects():
    first = service_task.module_kwargs()
    assert first['supports_check_mode'] is True
    assert first['mutually_exclusive'] == [('supervisor_config', 'supervisor_url')]
    assert set(first['argument_spec']) == set(service_spec.argument_spec())
    first['mutually_exclusive'].append(('state', 'only'))
    first['argument_spec']['services']['options']['name']['required'] = False
    second = service_task.module_kwargs()
    assert second['mutually_exclusive'] == [('supervisor_config', 'supervisor_url')]
    assert second['argument_spec']['services']['options']['name']['required'] is True
    with patch_module_args({'services': [{'name': 'a'}], 'poll_interval': 0.25}):
        module = basic.AnsibleModule(**second)
    assert module.params['poll_interval'] == 0.25 and module.params['services'][0]['timeout'] == 60
    assert module.supports_check_mode


def test_module_kwargs_keeps_supervisor_options_exclusive():
    spec = service_task.module_kwargs()
    del spec['supports_check_mode']
    validated = ArgumentSpecValidator(**spec).validate(
        {'services': [{'name': 'a'}], 'supervisor_config': '/x.conf', 'supervisor_url': 'http://127.0.0.1:1'})
    assert any('mutually exclusive' in m for m in validated.error_messages), validated.error_messages


def test_the_module_file_is_only_docs_and_main():
    assert mod.run is service_task.run and mod.module_kwargs is service_task.module_kwargs
    own = [name for name, value in vars(mod).items()
           if callable(value) and getattr(value, '__module__', None) == mod.__name__]
    assert own == ['main']


SERVER = textwrap.dedent("""
    import os, socket, sys, time
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(5)
    with open(pidfile + '.tmp', 'w') as handle:
        handle.write('%d\\n' % os.getpid())
    os.replace(pidfile + '.tmp', pidfile)
    while True:
        conn, dummy = srv.accept()
        conn.close()
""")


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def script_server(tmp_path):
    """A real server started by start_command (pidfile + port); whatever pid it wrote is killed at the end."""
    script = tmp_path / 'server.py'
    script.write_text(SERVER)
    pidfile = tmp_path / 'server.pid'
    port = free_port()
    service = {'name': 'pmod-ts', 'backend': 'script', 'pidfile': str(pidfile), 'port': port, 'timeout': 30,
               'start_command': '%s %s %d %s' % (sys.executable, script, port, pidfile)}
    pids = []
    yield service, pids
    for pid in pids:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as handle:
                ours = str(pidfile).encode() in handle.read()
        except OSError:
            ours = False
        if ours:  # still the server, not a later process that got the same pid
            os.kill(pid, signal.SIGKILL)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def test_run_in_process_starts_stops_and_runs_again(script_server, tmp_path):
    service, pids = script_server
    counter = tmp_path / 'count.py'
    counter.write_text('print("0 users logged in")\n')
    args = {'services': [service], 'poll_interval': 0.05}

    failed, res, dummy = run_in_process(dict(args, state='started'))
    assert not failed, res
    pid = service_procs.read_pidfile(service['pidfile'])
    pids.append(pid)
    assert service_procs.pid_alive(pid) and service_procs.port_open('127.0.0.1', service['port'])
    assert res['changed'] and res['order'] == ['pmod-ts'] and res['previously_running'] == []
    assert res['services'] == [dict(name='pmod-ts', backend='script', before='stopped', action='started',
                                    seconds=res['services'][0]['seconds'])]

    failed, res, dummy = run_in_process(dict(args, state='started'), check_mode=True, diff=True)
    assert not failed and not res['changed'] and res['order'] == []
    assert res['diff']['before'] == res['diff']['after'] == 'pmod-ts: running\n'

    failed, res, module = run_in_process(dict(args, drain={'command': '%s %s' % (sys.executable, counter)}), diff=True)
    assert not failed, res
    assert module.commands == [[sys.executable, str(counter)]]
    assert res['drain'] == dict(count=0, polls=1, waited=res['drain']['waited'], timed_out=False, message_sent=False)
    assert res['changed'] and res['previously_running'] == ['pmod-ts'] and res['services'][0]['action'] == 'stopped'
    assert res['diff'] == dict(before='pmod-ts: running\n', after='pmod-ts: stopped\n',
                               before_header='services', after_header='services')
    assert not service_procs.pid_alive(pid) and not service_procs.port_open('127.0.0.1', service['port'])

    failed, res, dummy = run_in_process(args)
    assert not failed and not res['changed'] and res['previously_running'] == []
    assert res['services'][0]['before'] == 'stopped' and res['services'][0]['action'] == 'none'


def test_run_in_process_failures_reach_the_caller(script_server, tmp_path):
    service, dummy_pids = script_server
    failed, res, dummy = run_in_process({'services': [dict(service, timeout=-1)]})
    assert failed and res['msg'].startswith('invalid input, nothing was stopped: ') and 'timeout -1' in res['msg']

    failed, res, dummy = run_in_process({'services': [{'name': 'nowhere-%d' % os.getpid(), 'backend': 'sysvinit'}]})
    assert failed and 'there is no init script' in res['msg'] and 'nothing was stopped' in res['msg']

    # a running service, so the drain runs; its query fails inside the driver's own exception handling
    sleeper = spawn_with_marker('clinops-drain-%d' % os.getpid())
    try:
        db = tmp_path / 'sessions.db'
        sqlite3.connect(str(db)).close()
        args = {'services': [{'name': 'sleeper', 'pattern': 'clinops-drain-%d' % os.getpid()}],
                'drain': {'query': 'SELECT count(*) FROM no_such_table', 'connection': {'engine': 'sqlite', 'path': str(db)}}}
        failed, res, dummy = run_in_process(args)
        assert failed and res['msg'] == 'drain.query failed before anything was stopped: no such table: no_such_table', res
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_pauses_start_short_and_double_up_to_the_poll_interval():
    pause = service_task.pauses(0.5)
    quick = [round(next(pause), 3) for dummy in range(31)]
    assert quick == [0.05] + [0.1] * 30  # 3.05 s of quick looks
    assert [round(next(pause), 3) for dummy in range(4)] == [0.2, 0.4, 0.5, 0.5]
    pause = service_task.pauses(0.02)
    assert [next(pause) for dummy in range(3)] == [0.02, 0.02, 0.02]


# ---------------------------------------------------------------- gentle looks at a port

class _Module:
    params = {}


def test_a_port_is_probed_at_most_once_a_second_and_each_probe_is_closed_at_once():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    listener.settimeout(2)
    port = listener.getsockname()[1]
    ctx = service_task.Context(_Module())
    service = svc('a', port=port)
    try:
        answers = [ctx.port_answers(service) for dummy in range(20)]  # a busy wait loop: one probe
        assert answers == [True] * 20
        first, dummy = listener.accept()
        first.settimeout(2)
        try:
            data = first.recv(16)
        except ConnectionResetError:
            data = b''  # the reset of SO_LINGER 0
        assert data == b''  # nothing sent, and closed at once (not left half-open until our timeout)
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):
            listener.accept()
        time.sleep(service_procs.PROBE_EVERY + 0.1)
        assert ctx.port_answers(service) is True
        second, dummy = listener.accept()  # a second probe only after PROBE_EVERY
        second.close()
        first.close()
    finally:
        listener.close()
