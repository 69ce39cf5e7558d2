"""Real database servers for the integration tests and benchmarks.

Each server is Debian's own binary, started in a fresh temporary folder on a free loopback port and
stopped by PID.  Nothing here is a mock.  Servers that refuse to run as root (initdb, mariadbd) run
as their Debian system user.

    with PostgresServer() as pg:  pg.params('mydb') -> the connection options a module takes
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# the one copy of the process control (start, wait until ready, stop by PID) lives in lab/procs.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'lab'))

import procs  # noqa: E402  pylint: disable=wrong-import-position,import-error

PASSWORD = 'Clinops-test-pw1'

free_port = procs.free_port
wait_port = procs.wait_port


def stop_pid(pid, sig=signal.SIGTERM, timeout=30.0):
    """Signal ``pid`` and wait until it is gone; SIGKILL it after ``timeout``; reap it."""
    procs.stop(pid, sig, timeout=timeout)


def _chown_tree(path, user):
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, d) for d in dirs] + [os.path.join(root, f) for f in files]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _as_user(user, cmd):
    return ['runuser', '-u', user, '--'] + cmd if os.geteuid() == 0 else cmd


class _Server:
    engine = None

    def __init__(self, base=None):
        self.base = tempfile.mkdtemp(prefix='clinops-%s-' % self.engine, dir=base)
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(self.base, 'server.log')

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc.pid, self.stop_signal)
            self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)

    stop_signal = signal.SIGTERM


class PostgresServer(_Server):
    """PostgreSQL 15 from Debian: superuser ``postgres`` with PASSWORD over TCP (scram-sha-256)."""

    engine = 'postgresql'
    stop_signal = signal.SIGINT  # fast shutdown
    bindir = '/usr/lib/postgresql/15/bin'
    user = 'postgres'

    def start(self):
        os.chmod(self.base, 0o755)
        data = os.path.join(self.base, 'data')
        pwfile = os.path.join(self.base, 'pw')
        with open(pwfile, 'w', encoding='utf-8') as handle:
            handle.write(PASSWORD + '\n')
        _chown_tree(self.base, self.user)
        subprocess.run(_as_user(self.user, [
            os.path.join(self.bindir, 'initdb'), '-D', data, '-U', 'postgres', '--pwfile', pwfile,
            '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8']),
            check=True, capture_output=True)
        os.unlink(pwfile)
        self.socket_dir = os.path.join(self.base, 'run')
        os.mkdir(self.socket_dir)
        _chown_tree(self.socket_dir, self.user)
        # Started as the postgres user directly (not through runuser), so that the PID we keep
        # is the postmaster's own and stop() signals the server itself.
        as_user = dict(user=self.user, group=self.user, extra_groups=[]) if os.geteuid() == 0 else {}
        self.proc = procs.start([
            os.path.join(self.bindir, 'postgres'), '-D', data, '-p', str(self.port),
            '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=%s' % self.socket_dir,
            '-c', 'fsync=off', '-c', 'max_connections=100'],
            self.log, new_session=False, cwd=self.base, **as_user)
        wait_port(self.port, proc=self.proc, log=self.log)
        for dummy in range(100):
            ready = subprocess.run(['pg_isready', '-h', '127.0.0.1', '-p', str(self.port)], capture_output=True, check=False)
            if ready.returncode == 0:
                break
            time.sleep(0.1)

    def params(self, database='postgres'):
        return dict(engine='postgresql', database=database, login_host='127.0.0.1', login_port=self.port,
                    login_user='postgres', login_password=PASSWORD)

    def connect(self, database='postgres', autocommit=True):
        import psycopg  # pylint: disable=import-outside-toplevel
        return psycopg.connect(host='127.0.0.1', port=self.port, user='postgres', password=PASSWORD,
                               dbname=database, autocommit=autocommit)

    def create_database(self, name):
        with self.connect() as conn:
            conn.execute('CREATE DATABASE "%s"' % name)


class MariaDBServer(_Server):
    """MariaDB 10.11 from Debian: user ``clinops`` with PASSWORD on 127.0.0.1, root by socket."""

    engine = 'mysql'
    user = 'mysql'

    def start(self):
        os.chmod(self.base, 0o755)
        self.datadir = os.path.join(self.base, 'data')
        self.socket = os.path.join(self.base, 'mysqld.sock')
        _chown_tree(self.base, self.user)
        subprocess.run(['mariadb-install-db', '--no-defaults', '--user=%s' % self.user, '--datadir=%s' % self.datadir,
                        '--auth-root-authentication-method=socket', '--skip-test-db'],
                       check=True, capture_output=True)
        self.proc = procs.start([
            '/usr/sbin/mariadbd', '--no-defaults', '--user=%s' % self.user, '--datadir=%s' % self.datadir,
            '--socket=%s' % self.socket, '--port=%d' % self.port, '--bind-address=127.0.0.1',
            '--pid-file=%s' % os.path.join(self.base, 'mysqld.pid'), '--skip-log-bin',
            '--innodb-flush-log-at-trx-commit=2', '--innodb-buffer-pool-size=128M'],
            self.log, new_session=False)
        wait_port(self.port, proc=self.proc, log=self.log)
        self.root_sql(
            "CREATE USER 'clinops'@'127.0.0.1' IDENTIFIED BY '%s';"
            "GRANT ALL PRIVILEGES ON *.* TO 'clinops'@'127.0.0.1' WITH GRANT OPTION;"
            "CREATE USER 'clinops'@'localhost' IDENTIFIED BY '%s';"
            "GRANT ALL PRIVILEGES ON *.* TO 'clinops'@'localhost' WITH GRANT OPTION;" % (PASSWORD, PASSWORD))

    def root_sql(self, sql):
        subprocess.run(['mariadb', '--no-defaults', '--protocol=socket', '--socket=%s' % self.socket, '-u', 'root',
                        '-e', sql], check=True, capture_output=True)

    def params(self, database):
        return dict(engine='mysql', database=database, login_host='127.0.0.1', login_port=self.port,
                    login_user='clinops', login_password=PASSWORD)

    def connect(self, database=None):
        import pymysql  # pylint: disable=import-outside-toplevel
        return pymysql.connect(host='127.0.0.1', port=self.port, user='clinops', password=PASSWORD,
                               database=database, autocommit=True)

    def create_database(self, name):
        self.root_sql('CREATE DATABASE `%s`' % name)


class FirebirdServer(_Server):
    """Firebird 3.0 SuperServer from Debian with its own root folder, security database and port.

    SYSDBA's password is PASSWORD.  Databases live in ``self.data``; ``params(name)`` points at
    ``<data>/<name>.fdb`` through the server (host/port:path).
    """

    engine = 'firebird'
    libdir = '/usr/lib/x86_64-linux-gnu/firebird/3.0'

    def start(self):
        root = self.base
        for name in ('plugins', 'intl', 'lib', 'UDF', 'firebird.msg', 'plugins.conf', 'fbtrace.conf'):
            os.symlink(os.path.join(self.libdir, name), os.path.join(root, name))
        shutil.copy('/var/lib/firebird/3.0/system/security3.fdb', os.path.join(root, 'security3.fdb'))
        with open(os.path.join(root, 'firebird.conf'), 'w', encoding='utf-8') as handle:
            handle.write('RemoteServicePort = %d\nRemoteBindAddress = 127.0.0.1\nUdfAccess = None\nSecurityDatabase = %s\n'
                         % (self.port, os.path.join(root, 'security3.fdb')))
        with open(os.path.join(root, 'databases.conf'), 'w', encoding='utf-8') as handle:
            handle.write('security.db = %s\n' % os.path.join(root, 'security3.fdb'))
        self.lock = os.path.join(root, 'lock')
        self.data = os.path.join(root, 'data')
        os.mkdir(self.lock)
        os.mkdir(self.data)
        self.env = dict(os.environ, FIREBIRD=root, FIREBIRD_LOCK=self.lock)
        subprocess.run(['isql-fb', '-user', 'SYSDBA', os.path.join(root, 'security3.fdb')],
                       input="create or alter user SYSDBA password '%s' using plugin Srp; commit;\n" % PASSWORD,
                       text=True, env=self.env, check=True, capture_output=True)
        self.proc = procs.start(['/usr/sbin/firebird'], self.log, new_session=False, env=self.env)
        wait_port(self.port, proc=self.proc, log=self.log)

    def path(self, name):
        return os.path.join(self.data, name + '.fdb')

    def params(self, name):
        return dict(engine='firebird', path=self.path(name), login_host='127.0.0.1', login_port=self.port,
                    login_user='SYSDBA', login_password=PASSWORD)

    def dsn(self, name):
        return '127.0.0.1/%d:%s' % (self.port, self.path(name))

    def create_database(self, name):
        from firebird.driver import create_database  # pylint: disable=import-outside-toplevel
        conn = create_database(self.dsn(name), user='SYSDBA', password=PASSWORD)
        conn.close()

    def connect(self, name):
        from firebird.driver import connect  # pylint: disable=import-outside-toplevel
        return connect(self.dsn(name), user='SYSDBA', password=PASSWORD)
