"""service_stop_ordered against real processes: supervisord from PyPI running small Python servers, Debian's
Orthanc init script through ``service``, and a script-started server with a pidfile.

Every server logs SPAWN / LISTEN / TERM / EXIT with a timestamp to a shared file, so the tests read the order
back from what the processes saw, not from what the module says.  Everything started here is stopped by PID.
"""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import xmlrpc.client

import pytest

from harness import run_task
import sqlcmd_double

MODULE = 'clinops.upgrade.service_stop_ordered'

SERVER = textwrap.dedent('''
    import os, signal, socket, sys, time
    name, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    exit_delay, start_delay, mode = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    pidfile = sys.argv[7] if len(sys.argv) > 7 else None

    def note(event):
        with open(log, 'a') as handle:
            handle.write('%s %s %.6f %d\\n' % (event, name, time.time(), os.getpid()))

    note('SPAWN')
    stopping = []

    def on_term(signum, frame):
        note('TERM')
        if mode != 'ignore' and not stopping:
            stopping.append(time.monotonic())

    signal.signal(signal.SIGTERM, on_term)
    time.sleep(start_delay)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(50)
    srv.settimeout(0.05)
    if pidfile:
        with open(pidfile + '.tmp', 'w') as handle:
            handle.write('%d\\n' % os.getpid())
        os.replace(pidfile + '.tmp', pidfile)
    note('LISTEN')
    while True:
        if stopping and time.monotonic() - stopping[0] >= exit_delay:
            note('EXIT')
            srv.close()
            if pidfile and os.path.exists(pidfile):
                os.unlink(pidfile)
            sys.exit(0)
        try:
            conn, dummy = srv.accept()
            conn.close()
        except socket.timeout:
            pass
''')

COUNTDOWN = textwrap.dedent('''
    import sys, time
    path = sys.argv[1]
    n = int(open(path).read().strip())
    print('%d users logged in' % n)
    if n > 0 and (len(sys.argv) < 3 or sys.argv[2] != 'stay'):
        with open(path, 'w') as handle:
            handle.write(str(n - 1))
        if n - 1 == 0:
            with open(path + '.zero', 'w') as handle:
                handle.write('%.6f' % time.time())
''')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def port_open(port, host='127.0.0.1'):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8') as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(')') + 2] not in 'ZX'


def wait_for(predicate, timeout=20.0, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError('timed out waiting for %s' % what)


def read_events(log):
    """[(event, name, time, pid)] in file order."""
    if not os.path.exists(log):
        return []
    events = []
    with open(log, encoding='utf-8') as handle:
        for line in handle:
            event, name, stamp, pid = line.split()
            events.append((event, name, float(stamp), int(pid)))
    return events


def first(events, event, name):
    times = [e[2] for e in events if e[0] == event and e[1] == name]
    return times[0] if times else None


def kill_pid(pid):
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Supervisord:
    """A real supervisord in ``tmp_path`` running SERVER programs; stopped by PID at teardown."""

    def __init__(self, tmp_path, programs):
        self.dir = tmp_path
        self.log = str(tmp_path / 'events.log')
        self.server = str(tmp_path / 'server.py')
        (tmp_path / 'server.py').write_text(SERVER)
        self.ports = {}
        self.conf = str(tmp_path / 'supervisord.conf')
        lines = [
            '[unix_http_server]', 'file=%(here)s/s.sock', '',
            '[supervisord]', 'logfile=%(here)s/supervisord.log', 'pidfile=%(here)s/supervisord.pid',
            'childlogdir=%(here)s', 'nodaemon=true', 'loglevel=info', '',
            '[rpcinterface:supervisor]', 'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface', '',
            '[supervisorctl]', 'serverurl=unix://%(here)s/s.sock', '',
        ]
        for name, opts in programs.items():
            port = free_port()
            self.ports[name] = port
            command = '%s %s %s %d %s %s %s %s' % (sys.executable, self.server, name, port, self.log,
                                                   opts.get('exit_delay', 1.5), opts.get('start_delay', 1.0),
                                                   opts.get('mode', 'normal'))
            if opts.get('command'):  # another program: its argv, {port} and {dir} filled in
                command = ' '.join(a.format(port=port, dir=tmp_path) for a in opts['command'])
            lines += [
                '[program:%s]' % name,
                'command=%s' % command,
                'autostart=%s' % ('true' if opts.get('autostart', True) else 'false'),
                'autorestart=false', 'startsecs=%d' % opts.get('startsecs', 0),
                'stopwaitsecs=%d' % opts.get('stopwaitsecs', 60),
                'stdout_logfile=%%(here)s/%s.out' % name, 'redirect_stderr=true', '',
            ]
        (tmp_path / 'supervisord.conf').write_text('\n'.join(lines))
        self.proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), 'supervisord'), '-c', self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.rpc = xmlrpc.client.ServerProxy('http://127.0.0.1', transport=UnixTransport(str(tmp_path / 's.sock')))
        wait_for(lambda: os.path.exists(str(tmp_path / 's.sock')), what='supervisord socket')
        for name, opts in programs.items():
            if opts.get('autostart', True):
                wait_for(lambda n=name: port_open(self.ports[n]), what='program %s port' % name)
        self.seen_pids = set()

    def state(self, name):
        info = self.rpc.supervisor.getProcessInfo(name)
        if info['pid']:
            self.seen_pids.add(info['pid'])
        return info['statename']

    def states(self):
        return dict((name, self.state(name)) for name in self.ports)

    def events(self):
        return read_events(self.log)

    def close(self):
        for event in self.events():
            self.seen_pids.add(event[3])
        try:
            for name in self.ports:
                self.state(name)
        except Exception:  # pylint: disable=broad-except
            pass
        for pid in self.seen_pids:
            kill_pid(pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        import http.client

        path = self.path

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
        return Conn('localhost')


@pytest.fixture
def supervisord(tmp_path):
    started = []

    def start(programs):
        sup = Supervisord(tmp_path, programs)
        started.append(sup)
        return sup
    yield start
    for sup in started:
        sup.close()


THREE = {'dicom': {}, 'ts': {}, 'ls': {}}


def sup_args(sup, services, **extra):
    args = {'supervisor_config': sup.conf, 'services': services, 'poll_interval': 0.2}
    args.update(extra)
    return args


def three_services(sup, **per):
    return [dict({'name': n, 'port': sup.ports[n], 'timeout': 20}, **per.get(n, {})) for n in ('dicom', 'ts', 'ls')]


def test_stop_in_order_waits_for_ports_then_start_in_reverse(supervisord):
    sup = supervisord(THREE)
    services = three_services(sup)

    check = run_task(MODULE, sup_args(sup, services), check=True, diff=True)
    assert not check.get('failed'), check
    assert check['changed'] is True
    assert check['order'] == ['dicom', 'ts', 'ls']
    assert 'dicom: running' in check['diff']['before'] and 'dicom: stopped' in check['diff']['after']
    time.sleep(0.5)
    assert sup.states() == {'dicom': 'RUNNING', 'ts': 'RUNNING', 'ls': 'RUNNING'}
    assert not [e for e in sup.events() if e[0] == 'TERM'], 'check mode sent a signal'

    stop = run_task(MODULE, sup_args(sup, services))
    assert not stop.get('failed'), stop
    assert stop['changed'] is True
    assert stop['order'] == ['dicom', 'ts', 'ls']
    assert stop['previously_running'] == ['dicom', 'ts', 'ls']
    assert [s['action'] for s in stop['services']] == ['stopped'] * 3
    assert all(s['backend'] == 'supervisor' and s['before'] == 'running' for s in stop['services'])
    assert all(s['seconds'] >= 1.4 for s in stop['services']), stop['services']
    events = sup.events()
    # each service got SIGTERM only after the previous one had exited and closed its port
    assert first(events, 'TERM', 'dicom') < first(events, 'EXIT', 'dicom') <= first(events, 'TERM', 'ts')
    assert first(events, 'TERM', 'ts') < first(events, 'EXIT', 'ts') <= first(events, 'TERM', 'ls')
    assert first(events, 'EXIT', 'ts') - first(events, 'TERM', 'ts') >= 1.4
    assert sup.states() == {'dicom': 'STOPPED', 'ts': 'STOPPED', 'ls': 'STOPPED'}
    assert not any(port_open(p) for p in sup.ports.values())

    again = run_task(MODULE, sup_args(sup, services))
    assert not again.get('failed'), again
    assert again['changed'] is False
    assert again['order'] == [] and again['previously_running'] == []
    assert [s['action'] for s in again['services']] == ['none'] * 3

    check_start = run_task(MODULE, sup_args(sup, services, state='started', only=stop['previously_running']), check=True)
    assert check_start['changed'] is True and check_start['order'] == ['ls', 'ts', 'dicom']
    assert sup.states() == {'dicom': 'STOPPED', 'ts': 'STOPPED', 'ls': 'STOPPED'}

    start = run_task(MODULE, sup_args(sup, services, state='started', only=stop['previously_running']))
    assert not start.get('failed'), start
    assert start['order'] == ['ls', 'ts', 'dicom']
    events = sup.events()
    spawns = [e for e in events if e[0] == 'SPAWN']
    listens = [e for e in events if e[0] == 'LISTEN']
    # the second SPAWN of each: the restart; the next one spawned only after the previous one listened
    last_spawn = dict((e[1], e[2]) for e in spawns)
    last_listen = dict((e[1], e[2]) for e in listens)
    assert last_listen['ls'] <= last_spawn['ts'] and last_listen['ts'] <= last_spawn['dicom']
    assert last_spawn['ts'] - last_spawn['ls'] >= 0.9  # the 1 s start delay was waited for
    assert sup.states() == {'dicom': 'RUNNING', 'ts': 'RUNNING', 'ls': 'RUNNING'}
    assert all(port_open(p) for p in sup.ports.values())

    again = run_task(MODULE, sup_args(sup, services, state='started'))
    assert again['changed'] is False and again['order'] == []


def test_only_previously_running_brings_back_only_what_ran(supervisord):
    sup = supervisord(THREE)
    services = three_services(sup)
    sup.rpc.supervisor.stopProcess('dicom', True)
    stop = run_task(MODULE, sup_args(sup, services))
    assert not stop.get('failed'), stop
    assert stop['previously_running'] == ['ts', 'ls']
    assert stop['order'] == ['ts', 'ls']
    assert [s['before'] for s in stop['services']] == ['stopped', 'running', 'running']
    start = run_task(MODULE, sup_args(sup, services, state='started', only=stop['previously_running']))
    assert not start.get('failed'), start
    assert start['order'] == ['ls', 'ts']
    assert sup.states() == {'dicom': 'STOPPED', 'ts': 'RUNNING', 'ls': 'RUNNING'}


def test_restarted_stops_in_order_then_starts_in_reverse(supervisord):
    sup = supervisord({'dicom': {'exit_delay': 0.3, 'start_delay': 0.3}, 'ts': {'exit_delay': 0.3, 'start_delay': 0.3}})
    services = [{'name': 'dicom', 'port': sup.ports['dicom']}, {'name': 'ts', 'port': sup.ports['ts']}]
    res = run_task(MODULE, sup_args(sup, services, state='restarted'))
    assert not res.get('failed'), res
    assert res['order'] == ['dicom', 'ts', 'ts', 'dicom']
    assert [s['action'] for s in res['services']] == ['restarted', 'restarted']
    events = sup.events()
    assert first(events, 'EXIT', 'dicom') <= first(events, 'TERM', 'ts')
    spawns = [(e[1], e[2]) for e in events if e[0] == 'SPAWN'][2:]
    assert [n for n, t in spawns] == ['ts', 'dicom']
    assert sup.states() == {'dicom': 'RUNNING', 'ts': 'RUNNING'}


def test_service_that_ignores_sigterm_fails_and_later_services_keep_running(supervisord):
    sup = supervisord({'dicom': {'mode': 'ignore'}, 'ts': {}, 'ls': {}})
    services = three_services(sup, dicom={'timeout': 3})
    pid = sup.rpc.supervisor.getProcessInfo('dicom')['pid']
    res = run_task(MODULE, sup_args(sup, services))
    assert res.get('failed'), res
    msg = res['msg']
    assert 'service dicom did not stop within 3 s' in msg
    assert 'pid %d alive' % pid in msg and 'port %d open' % sup.ports['dicom'] in msg
    assert 'not touched: ts, ls' in msg
    assert [s['action'] for s in res['services']] == ['failed', 'none', 'none']
    events = sup.events()
    assert first(events, 'TERM', 'dicom') is not None
    assert first(events, 'TERM', 'ts') is None and first(events, 'TERM', 'ls') is None
    assert pid_alive(pid)
    assert sup.state('ts') == 'RUNNING' and sup.state('ls') == 'RUNNING'
    assert port_open(sup.ports['ts']) and port_open(sup.ports['ls'])


def test_kill_after_escalates_to_sigkill(supervisord):
    sup = supervisord({'dicom': {'mode': 'ignore'}, 'ts': {'exit_delay': 0.2}})
    services = [{'name': 'dicom', 'port': sup.ports['dicom'], 'timeout': 2, 'kill_after': True},
                {'name': 'ts', 'port': sup.ports['ts']}]
    pid = sup.rpc.supervisor.getProcessInfo('dicom')['pid']
    res = run_task(MODULE, sup_args(sup, services))
    assert not res.get('failed'), res
    assert [s['action'] for s in res['services']] == ['killed', 'stopped']
    assert res['services'][0]['seconds'] >= 2
    assert not pid_alive(pid)
    assert not port_open(sup.ports['dicom'])
    events = sup.events()
    assert first(events, 'EXIT', 'dicom') is None  # it never exited by itself
    assert first(events, 'TERM', 'ts') is not None
    assert sup.states() == {'dicom': 'STOPPED', 'ts': 'STOPPED'}


def write_countdown(tmp_path, start):
    (tmp_path / 'countdown.py').write_text(COUNTDOWN)
    (tmp_path / 'users').write_text(str(start))
    return str(tmp_path / 'countdown.py'), str(tmp_path / 'users')


def test_drain_waits_until_the_count_reaches_zero(supervisord, tmp_path):
    sup = supervisord({'dicom': {'exit_delay': 0.2}, 'ts': {'exit_delay': 0.2}})
    script, users = write_countdown(tmp_path, 3)
    services = [{'name': 'dicom', 'port': sup.ports['dicom']}, {'name': 'ts', 'port': sup.ports['ts']}]
    drain = {'command': '%s %s %s' % (sys.executable, script, users), 'interval': 1, 'max_wait': 30,
             'broadcast': 'Upgrade: the servers stop in {minutes} minutes ({count} users).'}
    check = run_task(MODULE, sup_args(sup, services, drain=drain), check=True)
    assert check['drain']['skipped'] == 'check mode'
    assert (tmp_path / 'users').read_text() == '3'

    res = run_task(MODULE, sup_args(sup, services, drain=drain))
    assert not res.get('failed'), res
    assert res['drain']['count'] == 0 and res['drain']['polls'] == 4
    assert res['drain']['timed_out'] is False and res['drain']['message_sent'] is True
    assert res['drain']['waited'] >= 2.5
    zero_at = float((tmp_path / 'users.zero').read_text())
    assert first(sup.events(), 'TERM', 'dicom') > zero_at
    assert sup.states() == {'dicom': 'STOPPED', 'ts': 'STOPPED'}


@pytest.mark.parametrize('on_timeout', ['fail', 'proceed'])
def test_drain_timeout(supervisord, tmp_path, on_timeout):
    sup = supervisord({'dicom': {'exit_delay': 0.2}})
    script, users = write_countdown(tmp_path, 5)
    services = [{'name': 'dicom', 'port': sup.ports['dicom']}]
    drain = {'command': '%s %s %s stay' % (sys.executable, script, users), 'interval': 1, 'max_wait': 2,
             'on_timeout': on_timeout}
    started = time.monotonic()
    res = run_task(MODULE, sup_args(sup, services, drain=drain))
    assert res['drain']['timed_out'] is True and res['drain']['count'] == 5
    assert res['drain']['waited'] >= 2
    if on_timeout == 'fail':
        assert res.get('failed'), res
        assert 'still 5 after 2 s' in res['msg'] and 'nothing was stopped' in res['msg']
        assert sup.state('dicom') == 'RUNNING'
        assert first(sup.events(), 'TERM', 'dicom') is None
    else:
        assert not res.get('failed'), res
        assert any('on_timeout=proceed' in w for w in res.get('warnings', []))
        assert sup.state('dicom') == 'STOPPED'
        assert first(sup.events(), 'TERM', 'dicom') > started


WORK_QUERY = "SELECT COUNT(*) FROM dbo.WorkQueue WHERE Status = 'InProgress'"


def test_drain_query_on_mssql_through_sqlcmd(supervisord, tmp_path):
    """No SQL Server here: the drain's count comes through the sqlcmd double (it refuses what real sqlcmd would)."""
    sup = supervisord({'dicom': {'exit_delay': 0.2}})
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir, {'product_version': '16.0.4135.4', 'databases': {'ImageServer': {'tables': {}}},
                                   'queries': {WORK_QUERY: {'sequence': [['2'], ['1'], ['0']]}}})
    env = {'PATH': os.pathsep.join([bindir, os.path.dirname(sys.executable), os.environ.get('PATH', '')])}
    services = [{'name': 'dicom', 'port': sup.ports['dicom']}]
    drain = {'query': WORK_QUERY, 'interval': 1, 'max_wait': 30,
             'connection': {'engine': 'mssql', 'database': 'ImageServer', 'login_instance': 'SQLEXPRESS'}}
    res = run_task(MODULE, sup_args(sup, services, drain=drain), env=env)
    assert not res.get('failed'), res
    assert res['drain']['count'] == 0 and res['drain']['polls'] == 3 and res['drain']['timed_out'] is False
    assert sup.state('dicom') == 'STOPPED'
    calls = sqlcmd_double.calls(bindir)
    assert [c['statement'] for c in calls] == ['SET NOCOUNT ON; USE [ImageServer]; %s' % WORK_QUERY] * 3
    assert all(c['argv'][:3] == ['-E', '-S', 'tcp:127.0.0.1\\SQLEXPRESS'] and '-x' in c['argv'] for c in calls)

    # a drain query SQL Server refuses stops nothing
    sup.rpc.supervisor.startProcess('dicom')
    bad = run_task(MODULE, sup_args(sup, services, drain=dict(drain, query='SELECT COUNT(*) FROM NoSuchTable')), env=env)
    assert bad.get('failed') and 'Msg 208' in bad['msg'] and 'before anything was stopped' in bad['msg'], bad
    assert sup.state('dicom') == 'RUNNING'


@pytest.mark.parametrize('case', ['unknown_service', 'unknown_backend', 'duplicate', 'negative_timeout', 'only_unknown'])
def test_bad_input_fails_before_anything_stops(supervisord, case):
    sup = supervisord({'dicom': {'exit_delay': 0.2}, 'ts': {'exit_delay': 0.2}})
    services = [{'name': 'dicom', 'port': sup.ports['dicom']}, {'name': 'ts', 'port': sup.ports['ts']}]
    extra = {}
    expect = ''
    if case == 'unknown_service':
        services.append({'name': 'nosuch', 'backend': 'supervisor'})
        expect = 'has no program nosuch'
    elif case == 'unknown_backend':
        services[1]['backend'] = 'upstart'
        expect = 'upstart'
    elif case == 'duplicate':
        services.append({'name': 'dicom'})
        expect = 'duplicate service name dicom'
    elif case == 'negative_timeout':
        services[1]['timeout'] = -5
        expect = 'timeout -5 is negative'
    else:
        extra['only'] = ['dicom', 'pmod']
        expect = 'not in services: pmod'
    res = run_task(MODULE, sup_args(sup, services, **extra))
    assert res.get('failed'), res
    assert expect in res['msg'], res['msg']
    time.sleep(0.3)
    assert sup.states() == {'dicom': 'RUNNING', 'ts': 'RUNNING'}
    assert not [e for e in sup.events() if e[0] == 'TERM']


def test_auto_without_any_backend_fails_clearly(supervisord):
    sup = supervisord({'dicom': {'exit_delay': 0.2}})
    res = run_task(MODULE, sup_args(sup, [{'name': 'dicom'}, {'name': 'nowhere-%d' % os.getpid()}]))
    assert res.get('failed')
    assert 'cannot find service nowhere' in res['msg'] and 'nothing was stopped' in res['msg']
    assert sup.state('dicom') == 'RUNNING'


# ---------------------------------------------------------------- Orthanc's init script

def orthanc_pid():
    try:
        with open('/run/orthanc.pid', encoding='utf-8') as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


@pytest.fixture
def orthanc():
    if not os.path.exists('/etc/init.d/orthanc'):
        pytest.skip('Debian orthanc package is not installed')
    subprocess.run(['service', 'orthanc', 'stop'], check=False, capture_output=True)
    yield
    pid = orthanc_pid()
    subprocess.run(['service', 'orthanc', 'stop'], check=False, capture_output=True)
    kill_pid(pid)
    out = subprocess.run(['pgrep', '-x', 'Orthanc'], capture_output=True, text=True, check=False).stdout.split()
    for pid in out:
        kill_pid(int(pid))


@pytest.mark.serial  # Debian's init script judges any Orthanc on the machine, and the fixture stops them all
def test_orthanc_sysvinit_through_service(orthanc):
    services = [{'name': 'orthanc', 'port': 8042, 'timeout': 60}]
    check = run_task(MODULE, {'services': services, 'state': 'started'}, check=True)
    assert not check.get('failed'), check
    assert check['changed'] is True and check['services'][0]['backend'] == 'sysvinit'
    assert not port_open(8042)

    start = run_task(MODULE, {'services': services, 'state': 'started'})
    assert not start.get('failed'), start
    assert start['changed'] is True and start['services'][0]['action'] == 'started'
    assert port_open(8042)
    pid = orthanc_pid()
    assert pid and pid_alive(pid)
    assert subprocess.run(['service', 'orthanc', 'status'], capture_output=True, check=False).returncode == 0

    check = run_task(MODULE, {'services': services}, check=True)
    assert check['changed'] is True and check['order'] == ['orthanc']
    assert pid_alive(pid) and port_open(8042)

    stop = run_task(MODULE, {'services': services})
    assert not stop.get('failed'), stop
    assert stop['changed'] is True and stop['previously_running'] == ['orthanc']
    assert stop['services'][0]['action'] == 'stopped'
    assert not pid_alive(pid)
    assert not port_open(8042)
    assert subprocess.run(['service', 'orthanc', 'status'], capture_output=True, check=False).returncode == 3

    again = run_task(MODULE, {'services': services})
    assert again['changed'] is False


# ---------------------------------------------------------------- a server started from a script

@pytest.fixture
def script_server(tmp_path):
    (tmp_path / 'server.py').write_text(SERVER)
    info = {'port': free_port(), 'pidfile': str(tmp_path / 'server.pid'), 'log': str(tmp_path / 'events.log'),
            'script': str(tmp_path / 'server.py')}
    yield info
    for event in read_events(info['log']):
        kill_pid(event[3])


def test_script_started_server_with_pidfile(script_server):
    s = script_server
    start_command = '%s %s pmod-ts %d %s 1.0 0.5 normal %s' % (sys.executable, s['script'], s['port'], s['log'], s['pidfile'])
    services = [{'name': 'pmod-ts', 'start_command': start_command, 'pidfile': s['pidfile'], 'port': s['port'], 'timeout': 15}]

    check = run_task(MODULE, {'services': services, 'state': 'started'}, check=True)
    assert not check.get('failed'), check
    assert check['changed'] is True and check['services'][0]['backend'] == 'script'
    time.sleep(0.5)
    assert read_events(s['log']) == [] and not os.path.exists(s['pidfile'])

    start = run_task(MODULE, {'services': services, 'state': 'started'})
    assert not start.get('failed'), start
    assert start['changed'] is True
    with open(s['pidfile'], encoding='utf-8') as handle:
        pid = int(handle.read())
    assert pid_alive(pid) and port_open(s['port'])

    again = run_task(MODULE, {'services': services, 'state': 'started'})
    assert again['changed'] is False

    stop = run_task(MODULE, {'services': services})
    assert not stop.get('failed'), stop
    assert stop['changed'] is True and stop['services'][0]['action'] == 'stopped'
    assert stop['services'][0]['seconds'] >= 0.9
    assert not pid_alive(pid) and not port_open(s['port'])
    events = read_events(s['log'])
    assert [e[0] for e in events] == ['SPAWN', 'LISTEN', 'TERM', 'EXIT']

    again = run_task(MODULE, {'services': services})
    assert again['changed'] is False


def test_script_start_command_that_fails_is_reported(script_server):
    s = script_server
    services = [{'name': 'broken', 'start_command': '%s -c "import sys; sys.exit(3)"' % sys.executable,
                 'pidfile': s['pidfile'], 'timeout': 10}]
    res = run_task(MODULE, {'services': services, 'state': 'started'})
    assert res.get('failed'), res
    assert 'service broken failed to start' in res['msg'] and 'exited with 3' in res['msg']


# --- gentle waits: a DICOM server with a small association limit ---------------------------------------------

DICOM_SCP = textwrap.dedent('''
    import sys, time
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification
    port, log = int(sys.argv[1]), sys.argv[2]

    def opened(event):
        with open(log, 'a') as handle:
            handle.write('OPEN %.6f\\n' % time.time())

    ae = AE(ae_title='GENTLE_DS')
    ae.add_supported_context(Verification)
    ae.maximum_associations = 1   # one association at a time, like a small DICOM node
    ae.acse_timeout = 30          # a connection that sends nothing holds that slot for 30 s
    ae.network_timeout = 60
    ae.start_server(('127.0.0.1', port), block=True,
                    evt_handlers=[(evt.EVT_CONN_OPEN, opened), (evt.EVT_C_ECHO, lambda event: 0x0000)])
''')


@pytest.mark.parametrize('judged_by', ['dicom', 'port'])
def test_start_wait_is_gentle_with_a_dicom_server(supervisord, tmp_path, judged_by):
    """supervisord says STARTING for 3 s while the SCP already listens (startsecs=3): the wait must not probe the port
    meanwhile, then look at most once a second; a DICOM service is judged by a C-ECHO, which leaves the SCP's one
    association slot free, so a C-ECHO right after the start is answered (before: a probe every 0.1 s, each holding
    the slot until the ACSE timeout, and the C-ECHO rejected with local limit exceeded)."""
    from ansible_collections.clinops.upgrade.plugins.module_utils import dicom  # pylint: disable=import-outside-toplevel

    (tmp_path / 'scp.py').write_text(DICOM_SCP)
    conns = str(tmp_path / 'conns.log')
    sup = supervisord({'ds': {'command': [sys.executable, '{dir}/scp.py', '{port}', conns],
                              'autostart': False, 'startsecs': 3}})
    service = {'name': 'ds', 'port': sup.ports['ds'], 'timeout': 30}
    if judged_by == 'dicom':
        service['dicom'] = {'called_aet': 'GENTLE_DS'}
    began = time.time()
    result = run_task(MODULE, sup_args(sup, [service], state='started', poll_interval=0.5))
    ended = time.time()
    assert not result.get('failed'), result
    assert sup.state('ds') == 'RUNNING'
    opened = [float(line.split()[1]) for line in open(conns, encoding='utf-8')] if os.path.exists(conns) else []
    # supervisord said STARTING for 3 s: no connection then; after it, at most one a second
    assert opened, 'the wait never looked at the port'
    assert min(opened) >= began + 2.5, (began, opened)
    assert len(opened) <= (ended - began - 3) + 1, (ended - began, opened)
    if judged_by == 'dicom':
        dicom.quiet_pynetdicom()
        peer = dict(dicom.DEFAULTS, host='127.0.0.1', port=sup.ports['ds'], called_aet='GENTLE_DS', tls=None,
                    connect_timeout=5, acse_timeout=5, dimse_timeout=5)
        echo = dicom.run_peer(peer)  # no wait: the slot must be free now
        assert echo['outcome'] == 'success', echo
