"""schema_update on a real PostgreSQL 15 (started here, on a free port, in a temporary folder).

1. 200 small migrations through the module (one ansible-playbook run: history table, lock, checksums,
   one transaction per file) vs the same files applied by one psql run (ON_ERROR_STOP, no -1, no history).
2. A run with nothing to do on a history of 1000 entries (the cost of reading and validating the history).
"""
import os
import subprocess
import tempfile
import time

import servers
from harness import run_task

MODULE = 'clinops.upgrade.schema_update'


def _write(folder, count):
    os.makedirs(folder)
    names = []
    for i in range(1, count + 1):
        name = 'V%d__table_%d.sql' % (i, i)
        with open(os.path.join(folder, name), 'w', encoding='utf-8') as handle:
            handle.write("-- migration %d\nCREATE TABLE b_%d (id integer PRIMARY KEY, v text);\n"
                         "INSERT INTO b_%d VALUES (1, 'x; y');\n" % (i, i, i))
        names.append(name)
    return names


def _count_tables(server, database):
    with server.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'b\\_%'").fetchone()[0]


def run(report):
    with servers.PostgresServer() as server, tempfile.TemporaryDirectory(prefix='clinops-bench-') as tmp:
        for name in ('ours', 'plain', 'noop'):
            server.create_database(name)

        folder = os.path.join(tmp, 'sql200')
        names = _write(folder, 200)
        started = time.monotonic()
        result = run_task(MODULE, dict(server.params('ours'), migrations=folder))
        ours = time.monotonic() - started
        if result.get('failed') or len(result['applied']) != 200:
            raise RuntimeError('schema_update failed: %s' % result.get('msg'))

        combined = os.path.join(tmp, 'all.sql')
        with open(combined, 'w', encoding='utf-8') as out:
            for name in names:
                with open(os.path.join(folder, name), encoding='utf-8') as handle:
                    out.write(handle.read())
        env = dict(os.environ, PGPASSWORD=servers.PASSWORD)
        started = time.monotonic()
        subprocess.run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', str(server.port),
                        '-U', 'postgres', '-d', 'plain', '-f', combined], check=True, env=env, capture_output=True)
        plain = time.monotonic() - started
        if not _count_tables(server, 'ours') == _count_tables(server, 'plain') == 200:
            raise RuntimeError('the two databases differ')
        report('schema_update 200 migrations vs psql', ours, plain,
               'ansible-playbook run incl. history, lock, checksums, 200 transactions')

        big = os.path.join(tmp, 'sql1000')
        _write(big, 1000)
        setup = run_task(MODULE, dict(server.params('noop'), migrations=big))
        if setup.get('failed'):
            raise RuntimeError('setup failed: %s' % setup.get('msg'))
        started = time.monotonic()
        noop = run_task(MODULE, dict(server.params('noop'), migrations=big))
        seconds = time.monotonic() - started
        if noop.get('failed') or noop['changed']:
            raise RuntimeError('the no-op run changed something: %s' % noop)
        report('schema_update no-op, history of 1000', seconds, None, 'ansible-playbook run, nothing to apply')
