"""db_backup against the plain dump tools on the same generated databases, in the same run.

PostgreSQL: a generated database of at least 500 MB (four tables, so that directory format has something to
parallelise).  db_backup custom format (default gzip, checksum while writing, verify quick) vs plain
``pg_dump -Fc -f``; directory format with jobs 2 vs jobs 1.  MariaDB: a generated database vs plain
``mariadb-dump --single-transaction > file``.

Each comparison runs DB_BACKUP_BENCH_ROUNDS times (default 3), alternating ours and plain, and keeps the
faster run of each (a warm cache for both; other work on the machine only ever slows a run down, so the
minimum is the fairest figure).  CPU seconds of the client processes are reported too: they do not depend on
what else the machine is doing.  "ours" is the module's own ``duration_s`` (connect, size probe, tool versions, dump, sha256,
verification, manifest); the ansible-playbook start-up around it (about 2-3 s) is reported in a separate row.
Set DB_BACKUP_BENCH_ROWS to change the row count per PostgreSQL table (default 1,300,000 x 4 tables).
"""
import os
import resource
import shutil
import subprocess
import tempfile
import time

import harness
import servers

MODULE = 'clinops.upgrade.db_backup'
PG_ROWS = int(os.environ.get('DB_BACKUP_BENCH_ROWS', '1300000'))
ROUNDS = int(os.environ.get('DB_BACKUP_BENCH_ROUNDS', '3'))
MY_ROWS = int(os.environ.get('DB_BACKUP_BENCH_MY_ROWS', '1500000'))


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ours(args):
    """(module duration_s, wall clock, result); result['cpu_s'] is the CPU time of every client process."""
    started = time.monotonic()
    cpu = _children_cpu()
    result = harness.run_task(MODULE, args)
    wall = time.monotonic() - started
    if result.get('failed'):
        raise RuntimeError('db_backup failed: %s' % result.get('msg'))
    result['cpu_s'] = _children_cpu() - cpu
    return result['duration_s'], wall, result


def _plain(cmd, env, stdout=None, cpu_out=None):
    started = time.monotonic()
    cpu = _children_cpu()
    if stdout:
        with open(stdout, 'wb') as handle:
            subprocess.run(cmd, env=env, check=True, stdout=handle)
    else:
        subprocess.run(cmd, env=env, check=True)
    if cpu_out is not None:
        cpu_out.append(_children_cpu() - cpu)
    return time.monotonic() - started


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _s, names in os.walk(path) for f in names)
    return os.path.getsize(path)


def _clear(folder):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)


def bench_postgres(report, work):
    with servers.PostgresServer(base=work) as pg:
        pg.create_database('bench')
        started = time.monotonic()
        with pg.connect('bench') as conn:
            for index in range(4):
                conn.execute('CREATE TABLE t%d (id bigint PRIMARY KEY, a text, b text, born date, score double precision)' % index)
                conn.execute("INSERT INTO t%d SELECT g, md5(g::text), md5((g * %d)::text) || 'x', date '1950-01-01' + (g %% 20000),"
                             " random() FROM generate_series(1, %d) g" % (index, index + 7, PG_ROWS))
            size = conn.execute("SELECT pg_database_size('bench')").fetchone()[0]
        print('bench: generated PostgreSQL database of %.0f MB in %.1fs' % (size / 1e6, time.monotonic() - started), flush=True)
        dest = os.path.join(work, 'pg-out')
        env = dict(os.environ, PGPASSWORD=servers.PASSWORD)
        conn_args = ['-h', '127.0.0.1', '-p', str(pg.port), '-U', 'postgres']
        params = pg.params('bench')

        ours_best = wall_best = plain_best = None
        plain_cpu, ours_cpu = [], []
        for _round in range(ROUNDS):
            _clear(dest)
            plain = _plain(['pg_dump', '-Fc', '-f', os.path.join(dest, 'plain.dump')] + conn_args + ['bench'], env, cpu_out=plain_cpu)
            plain_size = _size(os.path.join(dest, 'plain.dump'))
            _clear(dest)
            ours, wall, result = _ours(dict(params, dest=dest))
            ours_size = result['manifest']['size']
            ours_cpu.append(result['cpu_s'])
            plain_best = min(plain, plain_best or plain)
            ours_best = min(ours, ours_best or ours)
            wall_best = min(wall, wall_best or wall)
        none_best = None
        for _round in range(ROUNDS):
            _clear(dest)
            plain = _plain(['pg_dump', '-Fc', '-f', os.path.join(dest, 'plain.dump')] + conn_args + ['bench'], env)
            plain_best = min(plain, plain_best)
            _clear(dest)
            ours, _wall, _result = _ours(dict(params, dest=dest, verify='none'))
            none_best = min(ours, none_best or ours)
        note = 'PostgreSQL %d MB, custom gzip; ours incl. sha256 + verify quick; sizes ours %.0f MB / plain %.0f MB' % (
            size / 1e6, ours_size / 1e6, plain_size / 1e6)
        report('db_backup postgresql custom vs pg_dump -Fc', ours_best, plain_best, note)
        report('  same, ansible-playbook wall clock', wall_best, plain_best, 'includes ansible start-up')
        report('  same, CPU seconds of all client processes', min(ours_cpu), min(plain_cpu),
               'ours includes ansible-playbook, the module, pg_dump, sha256, pg_restore --list; robust to a busy machine')

        report('db_backup postgresql custom verify=none vs pg_dump -Fc', none_best, plain_best, 'checksum only')

        one = two = plain_dir = None
        for _round in range(ROUNDS):
            _clear(dest)
            ours1, _w, _r = _ours(dict(params, dest=dest, format='directory', jobs=1))
            _clear(dest)
            ours2, _w, _r = _ours(dict(params, dest=dest, format='directory', jobs=2))
            _clear(dest)
            plain = _plain(['pg_dump', '-Fd', '-j', '2', '-f', os.path.join(dest, 'plain.dir')] + conn_args + ['bench'], env)
            one = min(ours1, one or ours1)
            two = min(ours2, two or ours2)
            plain_dir = min(plain, plain_dir or plain)
        report('db_backup postgresql directory jobs 2 vs jobs 1', two, one, 'ratio < 1 means jobs 2 is faster; 2 cores')

        report('db_backup postgresql directory jobs 2 vs pg_dump -Fd -j 2', two, plain_dir,
               'ours hashes every file once after pg_dump wrote it')
        shutil.rmtree(dest, ignore_errors=True)


def bench_mariadb(report, work):
    with servers.MariaDBServer(base=work) as my:
        my.create_database('bench')
        started = time.monotonic()
        conn = my.connect('bench')
        try:
            cur = conn.cursor()
            cur.execute('CREATE TABLE t (id bigint PRIMARY KEY, a char(32), b varchar(40), born date, score double) ENGINE=InnoDB')
            cur.execute("INSERT INTO t SELECT seq, md5(seq), concat(md5(seq * 7), 'x'), date '1950-01-01' + interval (seq %% 20000) day,"
                        " rand() FROM seq_1_to_%d" % MY_ROWS)
            cur.execute('ANALYZE TABLE t')
            cur.fetchall()
            cur.execute("SELECT data_length + index_length FROM information_schema.tables WHERE table_schema = 'bench'")
            size = cur.fetchone()[0]
        finally:
            conn.close()
        print('bench: generated MariaDB database of %.0f MB in %.1fs' % (size / 1e6, time.monotonic() - started), flush=True)
        dest = os.path.join(work, 'my-out')
        params = my.params('bench')
        cnf = os.path.join(work, 'bench-my.cnf')
        with open(cnf, 'w', encoding='utf-8') as handle:
            handle.write('[client]\nuser=clinops\npassword="%s"\nhost=127.0.0.1\nport=%d\n' % (servers.PASSWORD, my.port))
        os.chmod(cnf, 0o600)
        plain_cmd = ['mariadb-dump', '--defaults-extra-file=%s' % cnf, '--single-transaction', '--quick', '--routines',
                     '--hex-blob', 'bench']
        ours_best = plain_best = gz_best = plain_gz_best = None
        for _round in range(ROUNDS):
            _clear(dest)
            plain = _plain(plain_cmd, None, stdout=os.path.join(dest, 'plain.sql'))
            _clear(dest)
            ours, _w, _r = _ours(dict(params, dest=dest))
            _clear(dest)
            started = time.monotonic()
            with open(os.path.join(dest, 'plain.sql.gz'), 'wb') as out:
                dump = subprocess.Popen(plain_cmd, stdout=subprocess.PIPE)
                subprocess.run(['gzip', '-c'], stdin=dump.stdout, stdout=out, check=True)
                dump.stdout.close()
                dump.wait()
            plain_gz = time.monotonic() - started
            _clear(dest)
            ours_gz, _w, _r = _ours(dict(params, dest=dest, compression='gzip'))
            plain_best = min(plain, plain_best or plain)
            ours_best = min(ours, ours_best or ours)
            plain_gz_best = min(plain_gz, plain_gz_best or plain_gz)
            gz_best = min(ours_gz, gz_best or ours_gz)
        report('db_backup mysql vs mariadb-dump > file', ours_best, plain_best,
               'MariaDB %d MB, no compression; ours incl. sha256 + verify quick (trailer)' % (size / 1e6))
        report('db_backup mysql gzip vs mariadb-dump piped to gzip', gz_best, plain_gz_best,
               'ours verify quick decompresses the whole file to read the trailer')
        shutil.rmtree(dest, ignore_errors=True)


def run(report):
    work = tempfile.mkdtemp(prefix='clinops-bench-db-')
    os.chmod(work, 0o755)  # the servers run as their own users and must reach their folders
    try:
        bench_postgres(report, work)
        bench_mariadb(report, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
