"""db_backup against real PostgreSQL 15, MariaDB 10.11, Firebird 3 and SQLite databases.

Every case reads the real state back: the files in dest, the manifest, the restored database's rows.
"""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import sqlcmd_double
from harness import run_task
from servers import PASSWORD

MODULE = 'clinops.upgrade.db_backup'
ROWS = 3000


# --------------------------------------------------------------------------------------------
# helpers

def listing(folder):
    """Every name in ``folder`` (hidden temporary names included), sorted."""
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def rows_digest(cur, query):
    cur.execute(query)
    sha = hashlib.sha256()
    count = 0
    for row in cur.fetchall():
        sha.update(repr(tuple(bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else v for v in row)).encode())
        count += 1
    return count, sha.hexdigest()


def flip_byte(path):
    """Invert one byte in the middle of ``path`` (the largest file of a folder)."""
    if os.path.isdir(path):
        files = [os.path.join(d, f) for d, _s, names in os.walk(path) for f in names]
        path = max(files, key=os.path.getsize)
    size = os.path.getsize(path)
    with open(path, 'r+b') as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))


def manifest_of(path):
    with open(path + '.manifest.json', encoding='utf-8') as handle:
        return json.load(handle)


def sha256_of(path):
    sha = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            sha.update(chunk)
    return sha.hexdigest()


class ArgvWatcher:
    """Sample every process's command line while a task runs; collect those that hold the password."""

    def __init__(self, secret):
        self.secret = secret.encode()
        self.hits = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        cmdline = handle.read()
                except OSError:
                    continue
                if self.secret in cmdline:
                    self.hits.append(cmdline.replace(b'\0', b' ').decode('utf-8', 'replace'))
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs folders; unmount them at teardown."""
    mounted = []

    def mount(name, options='size=1m'):
        folder = tmp_path / name
        folder.mkdir()
        subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)], check=True)
        mounted.append(folder)
        return str(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(['umount', '-l', str(folder)], check=False)


# --------------------------------------------------------------------------------------------
# PostgreSQL

PG_DIGEST = 'SELECT id, name, born, payload FROM patients ORDER BY id'


def pg_fill(server, name):
    server.create_database(name)
    with server.connect(name) as conn:
        conn.execute('CREATE TABLE patients (id int PRIMARY KEY, name text, born date, payload bytea)')
        conn.execute("INSERT INTO patients SELECT g, 'patient ' || md5(g::text), date '1950-01-01' + g,"
                     " decode(md5(g::text), 'hex') FROM generate_series(1, %d) g" % ROWS)
        conn.execute('CREATE TABLE studies (id serial PRIMARY KEY, patient int REFERENCES patients, modality text)')
        conn.execute("INSERT INTO studies (patient, modality) SELECT 1 + g %% %d, 'CT' FROM generate_series(1, 1500) g" % ROWS)


def pg_state(server, name):
    with server.connect(name) as conn:
        cur = conn.cursor()
        count, digest = rows_digest(cur, PG_DIGEST)
        cur.execute('SELECT count(*) FROM studies')
        return count, digest, cur.fetchone()[0]


def pg_databases(server):
    with server.connect() as conn:
        return sorted(r[0] for r in conn.execute('SELECT datname FROM pg_database'))


@pytest.fixture(scope='module')
def pg_db(postgres_server):
    pg_fill(postgres_server, 'clinic')
    return 'clinic'


def test_pg_check_mode_backup_reuse_damage_and_restore(postgres_server, pg_db, tmp_path):
    dest = str(tmp_path / 'backups')
    args = dict(postgres_server.params(pg_db), dest=dest, label='pre-upgrade', verify='restore')
    databases_before = pg_databases(postgres_server)

    # check mode: a prediction, nothing written (not even dest)
    result = run_task(MODULE, args, check=True)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True
    assert result['space_ok'] is True and result['free_space'] > result['estimated_size'] > 0
    assert result['backup_path'].startswith(dest + '/postgresql_clinic_pre-upgrade_')
    assert result['backup_path'].endswith('.dump')
    assert not os.path.exists(dest)

    # a real backup, with the password kept off every command line
    with ArgvWatcher(PASSWORD) as watcher:
        result = run_task(MODULE, args)
    assert not result.get('failed'), result.get('msg')
    assert watcher.samples > 3 and watcher.hits == []
    assert PASSWORD not in json.dumps(result)
    path = result['backup_path']
    assert result['changed'] is True and result['verified'] is True and result['reused'] is False
    assert listing(dest) == sorted([os.path.basename(path), os.path.basename(path) + '.manifest.json'])
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    manifest = manifest_of(path)
    assert manifest['sha256'] == sha256_of(path) and manifest['size'] == os.path.getsize(path)
    assert manifest['checksum_method'] == 'stream'
    assert manifest['row_counts'] == {'public.patients': ROWS, 'public.studies': 1500}
    assert manifest['verification']['ok'] is True and manifest['verification']['level'] == 'restore'
    assert manifest['server_version'].startswith('15.')
    assert manifest['tool_versions']['pg_dump'].startswith('pg_dump (PostgreSQL)')
    assert result['manifest']['sha256'] == manifest['sha256']
    # the file is a real custom-format archive
    toc = subprocess.run(['pg_restore', '--list', path], capture_output=True, text=True, check=True).stdout
    assert 'TABLE DATA public patients' in toc
    assert pg_databases(postgres_server) == databases_before  # the scratch database was dropped

    # rerun with the label: reused, nothing new
    again = run_task(MODULE, args)
    assert not again.get('failed'), again
    assert again['changed'] is False and again['reused'] is True and again['backup_path'] == path
    assert listing(dest) == sorted([os.path.basename(path), os.path.basename(path) + '.manifest.json'])
    check_again = run_task(MODULE, args, check=True)
    assert check_again['changed'] is False and check_again['reused'] is True

    # restore under another name: rows and content equal the source
    restored = run_task(MODULE, dict(args, state='restored', target_database='clinic_copy'))
    assert not restored.get('failed'), restored.get('msg')
    assert restored['changed'] is True and restored['backup_path'] == path
    assert restored['row_counts'] == {'public.patients': ROWS, 'public.studies': 1500}
    assert pg_state(postgres_server, 'clinic_copy') == pg_state(postgres_server, pg_db)
    assert sorted(pg_databases(postgres_server)) == sorted(databases_before + ['clinic_copy'])

    # one flipped byte: neither restored nor reused; a new backup is taken instead
    flip_byte(path)
    refused = run_task(MODULE, dict(args, state='restored', backup=path, target_database='clinic_bad'))
    assert refused.get('failed') and 'damaged' in refused['msg'], refused
    assert 'clinic_bad' not in pg_databases(postgres_server)
    retaken = run_task(MODULE, args)
    assert not retaken.get('failed'), retaken
    assert retaken['changed'] is True and retaken['reused'] is False and retaken['backup_path'] != path
    assert retaken['rejected'][0]['backup_path'] == path and 'damaged' in retaken['rejected'][0]['reason']
    assert len(listing(dest)) == 4


def test_pg_rollback_in_place(postgres_server, tmp_path):
    pg_fill(postgres_server, 'rollme')
    before = pg_state(postgres_server, 'rollme')
    dest = str(tmp_path / 'b')
    args = dict(postgres_server.params('rollme'), dest=dest, label='pre')
    assert not run_task(MODULE, args).get('failed')
    # the "upgrade" goes wrong
    with postgres_server.connect('rollme') as conn:
        conn.execute('DELETE FROM studies')
        conn.execute('ALTER TABLE patients ADD COLUMN broken int')
        conn.execute('UPDATE patients SET name = NULL WHERE id < 100')
    assert pg_state(postgres_server, 'rollme') != before
    check = run_task(MODULE, dict(args, state='restored'), check=True)
    assert check['changed'] is True and check['target_database'] == 'rollme'
    assert pg_state(postgres_server, 'rollme') != before
    result = run_task(MODULE, dict(args, state='restored'))
    assert not result.get('failed'), result.get('msg')
    assert pg_state(postgres_server, 'rollme') == before
    leftovers = [d for d in pg_databases(postgres_server) if d.startswith('rollme_')]
    assert leftovers == []


def test_pg_directory_jobs_and_retention(postgres_server, pg_db, tmp_path):
    dest = str(tmp_path / 'dir')
    args = dict(postgres_server.params(pg_db), dest=dest, format='directory', jobs=2, keep=2, verify='restore')
    paths = []
    for _attempt in range(3):
        result = run_task(MODULE, args)
        assert not result.get('failed'), result.get('msg')
        paths.append(result['backup_path'])
        time.sleep(1.1)  # distinct timestamps
    assert all(p.endswith('.dir') for p in paths)
    # keep=2: the oldest went, with its manifest; the newest two remain
    assert listing(dest) == sorted(os.path.basename(p) + s for p in paths[1:] for s in ('', '.manifest.json'))
    manifest = manifest_of(paths[-1])
    assert manifest['format'] == 'directory' and 'toc.dat' in manifest['files']
    for rel, entry in manifest['files'].items():
        assert sha256_of(os.path.join(paths[-1], rel)) == entry['sha256']
    assert oct(os.stat(paths[-1]).st_mode & 0o777) == '0o700'
    # check mode predicts the next pruning and deletes nothing
    predicted = run_task(MODULE, args, check=True)
    assert predicted['deleted'] == [paths[1]]
    assert os.path.exists(paths[1])
    # a damaged directory backup is refused
    flip_byte(paths[-1])
    refused = run_task(MODULE, dict(args, state='restored', backup=paths[-1], target_database='dir_bad'))
    assert refused.get('failed') and 'damaged' in refused['msg'], refused
    restored = run_task(MODULE, dict(args, state='restored', backup=paths[1], target_database='clinic_dir'))
    assert not restored.get('failed'), restored.get('msg')
    assert pg_state(postgres_server, 'clinic_dir') == pg_state(postgres_server, pg_db)


def test_pg_zstd_custom_roundtrip(postgres_server, pg_db, tmp_path):
    dest = str(tmp_path / 'z')
    result = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest, compression='zstd', name='{database}-{timestamp}'))
    assert not result.get('failed'), result.get('msg')
    assert os.path.basename(result['backup_path']).startswith('clinic-') and result['backup_path'].endswith('.dump.zst')
    assert subprocess.run(['zstd', '-t', '-q', result['backup_path']], check=False).returncode == 0
    restored = run_task(MODULE, dict(postgres_server.params(pg_db), backup=result['backup_path'], state='restored',
                                     target_database='clinic_zstd', verify='restore'))
    assert not restored.get('failed'), restored.get('msg')
    assert pg_state(postgres_server, 'clinic_zstd') == pg_state(postgres_server, pg_db)


@pytest.mark.parametrize('change, words', [
    (dict(login_password='wrong-password'), 'password authentication failed'),
    (dict(login_port=1), 'cannot connect'),
    (dict(database='no_such_db'), 'does not exist'),
    (dict(bin_dir='EMPTY'), 'client program pg_dump'),
    (dict(engine='oracle'), 'value of engine must be one of'),
    (dict(jobs=2), 'jobs 2 needs engine postgresql with format directory'),
    (dict(name='{nope}'), 'unknown field {nope}'),
    (dict(format='gbak'), 'format gbak does not apply to engine postgresql'),
])
def test_pg_failures_leave_nothing(postgres_server, pg_db, tmp_path, change, words):
    dest = str(tmp_path / 'fail')
    os.mkdir(dest)
    if change.get('bin_dir') == 'EMPTY':
        change = dict(change, bin_dir=str(tmp_path))
    result = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest, **change))
    assert result.get('failed'), result
    assert words in result['msg'], result['msg']
    assert PASSWORD not in json.dumps(result)
    assert listing(dest) == []


def test_pg_dest_read_only(postgres_server, pg_db, tmpfs):
    dest = tmpfs('ro', 'ro,size=1m')
    result = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest))
    assert result.get('failed') and 'not writable' in result['msg'] and 'Read-only' in result['msg'], result
    assert listing(dest) == []


def test_pg_not_enough_space(postgres_server, pg_db, tmpfs):
    dest = tmpfs('small')
    for check in (True, False):
        result = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest), check=check)
        assert result.get('failed') and 'not enough free space' in result['msg'], result
        assert result['space_ok'] is False
        assert listing(dest) == []


def test_pg_bad_restore_target_keeps_target(postgres_server, pg_db, tmp_path):
    """A backup whose manifest counts disagree with the restored rows is not swapped in."""
    dest = str(tmp_path / 'counts')
    result = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest, verify='restore', label='x'))
    assert not result.get('failed'), result.get('msg')
    manifest_file = result['backup_path'] + '.manifest.json'
    manifest = manifest_of(result['backup_path'])
    manifest['row_counts']['public.patients'] += 1
    with open(manifest_file, 'w', encoding='utf-8') as handle:
        json.dump(manifest, handle)
    before = pg_databases(postgres_server)
    refused = run_task(MODULE, dict(postgres_server.params(pg_db), dest=dest, label='x', state='restored',
                                    target_database='count_target'))
    assert refused.get('failed') and 'differs from the counts' in refused['msg'], refused
    assert pg_databases(postgres_server) == before


# --------------------------------------------------------------------------------------------
# MariaDB

MY_DIGEST = 'SELECT id, name, born, payload FROM patients ORDER BY id'


def my_fill(server, name):
    server.create_database(name)
    conn = server.connect(name)
    try:
        cur = conn.cursor()
        cur.execute('CREATE TABLE patients (id int PRIMARY KEY, name varchar(80), born date, payload varbinary(64))'
                    ' ENGINE=InnoDB')
        cur.executemany('INSERT INTO patients VALUES (%s, %s, %s, %s)', [
            (i, "patient '%d' \\ \"x\"" % i, '1990-01-%02d' % (1 + i % 28), hashlib.sha256(str(i).encode()).digest())
            for i in range(1, ROWS + 1)])
        cur.execute('CREATE TABLE visits (id int AUTO_INCREMENT PRIMARY KEY, patient int, note text)')
        cur.executemany('INSERT INTO visits (patient, note) VALUES (%s, %s)', [(i, 'n%d' % i) for i in range(700)])
    finally:
        conn.close()


def my_state(server, name):
    conn = server.connect(name)
    try:
        cur = conn.cursor()
        count, digest = rows_digest(cur, MY_DIGEST)
        cur.execute('SELECT count(*) FROM visits')
        return count, digest, cur.fetchone()[0]
    finally:
        conn.close()


def my_databases(server):
    conn = server.connect()
    try:
        cur = conn.cursor()
        cur.execute('SHOW DATABASES')
        return sorted(r[0] for r in cur.fetchall())
    finally:
        conn.close()


def test_mariadb_backup_reuse_damage_restore(mariadb_server, tmp_path):
    my_fill(mariadb_server, 'conaktiv')
    dest = str(tmp_path / 'my')
    args = dict(mariadb_server.params('conaktiv'), dest=dest, label='before', compression='gzip', verify='restore')
    before_dbs = my_databases(mariadb_server)

    result = run_task(MODULE, args, check=True)
    assert result['changed'] and not os.path.exists(dest)

    with ArgvWatcher(PASSWORD) as watcher:
        result = run_task(MODULE, args)
    assert not result.get('failed'), result.get('msg')
    assert watcher.hits == []
    path = result['backup_path']
    assert path.endswith('.sql.gz')
    manifest = manifest_of(path)
    assert manifest['sha256'] == sha256_of(path)
    assert manifest['row_counts'] == {'patients': ROWS, 'visits': 700}
    text = subprocess.run(['gzip', '-dc', path], capture_output=True, check=True).stdout
    assert b'-- Dump completed' in text[-200:] and PASSWORD.encode() not in text
    assert my_databases(mariadb_server) == before_dbs

    again = run_task(MODULE, args)
    assert again['changed'] is False and again['reused'] is True and again['backup_path'] == path

    restored = run_task(MODULE, dict(args, state='restored', target_database='conaktiv_copy'))
    assert not restored.get('failed'), restored.get('msg')
    assert restored['row_counts'] == {'patients': ROWS, 'visits': 700}
    assert my_state(mariadb_server, 'conaktiv_copy') == my_state(mariadb_server, 'conaktiv')

    # rollback over the existing copy after it was damaged by an "upgrade"
    conn = mariadb_server.connect('conaktiv_copy')
    conn.cursor().execute('DELETE FROM patients WHERE id < 10')
    conn.close()
    restored = run_task(MODULE, dict(args, state='restored', target_database='conaktiv_copy'))
    assert not restored.get('failed'), restored.get('msg')
    assert my_state(mariadb_server, 'conaktiv_copy') == my_state(mariadb_server, 'conaktiv')
    assert sorted(my_databases(mariadb_server)) == sorted(before_dbs + ['conaktiv_copy'])

    flip_byte(path)
    refused = run_task(MODULE, dict(args, state='restored', backup=path, target_database='conaktiv_bad'))
    assert refused.get('failed') and 'damaged' in refused['msg']
    retaken = run_task(MODULE, args)
    assert retaken['changed'] and not retaken['reused'] and retaken['rejected'][0]['backup_path'] == path


def test_mariadb_uncompressed_quick_and_failures(mariadb_server, tmp_path):
    if 'plainmy' not in my_databases(mariadb_server):
        my_fill(mariadb_server, 'plainmy')
    dest = str(tmp_path / 'plain')
    result = run_task(MODULE, dict(mariadb_server.params('plainmy'), dest=dest))
    assert not result.get('failed'), result.get('msg')
    assert result['backup_path'].endswith('.sql')
    assert result['manifest']['verification']['checks'][-1] == 'the dump ends with "-- Dump completed"'
    # a truncated dump fails the quick check and is not reused
    with open(result['backup_path'], 'r+b') as handle:
        handle.truncate(os.path.getsize(result['backup_path']) - 100)
    refused = run_task(MODULE, dict(mariadb_server.params('plainmy'), dest=dest, backup=result['backup_path'],
                                    state='restored', target_database='x'))
    assert refused.get('failed'), refused
    assert 'truncated' in refused['msg'] or 'damaged' in refused['msg']

    empty = str(tmp_path / 'empty')
    os.mkdir(empty)
    for change, words in ((dict(login_password='nope'), 'Access denied'),
                          (dict(bin_dir=str(tmp_path)), 'client program mariadb-dump or mysqldump')):
        failed = run_task(MODULE, dict(mariadb_server.params('plainmy'), dest=empty, **change))
        assert failed.get('failed') and words in failed['msg'], failed
        assert listing(empty) == []


# --------------------------------------------------------------------------------------------
# Firebird

FB_DIGEST = 'SELECT id, name, born FROM patients ORDER BY id'


def fb_fill(server, name):
    server.create_database(name)
    conn = server.connect(name)
    try:
        cur = conn.cursor()
        cur.execute('CREATE TABLE patients (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(80), born DATE)')
        conn.commit()
        cur.executemany('INSERT INTO patients VALUES (?, ?, ?)', [
            (i, 'ksamu patient %d' % i, __import__('datetime').date(1960, 1 + i % 12, 1 + i % 28)) for i in range(1, ROWS + 1)])
        conn.commit()
    finally:
        conn.close()


def fb_state(server, name):
    conn = server.connect(name)
    try:
        return rows_digest(conn.cursor(), FB_DIGEST)
    finally:
        conn.close()


def test_firebird_backup_reuse_damage_restore(firebird_server, tmp_path):
    fb_fill(firebird_server, 'ksamu')
    dest = str(tmp_path / 'fb')
    args = dict(firebird_server.params('ksamu'), dest=dest, label='pre', verify='restore')
    data_before = listing(firebird_server.data)

    result = run_task(MODULE, args, check=True)
    assert result['changed'] and result['backup_path'].endswith('.fbk') and not os.path.exists(dest)

    with ArgvWatcher(PASSWORD) as watcher:
        result = run_task(MODULE, args)
    assert not result.get('failed'), result.get('msg')
    assert watcher.hits == []
    path = result['backup_path']
    assert os.path.basename(path).startswith('firebird_ksamu_pre_')
    manifest = manifest_of(path)
    assert manifest['sha256'] == sha256_of(path) and manifest['row_counts'] == {'PATIENTS': ROWS}
    assert listing(firebird_server.data) == data_before  # the scratch databases are gone

    again = run_task(MODULE, args)
    assert again['changed'] is False and again['reused'] is True

    target = firebird_server.path('ksamu_copy')
    restored = run_task(MODULE, dict(args, state='restored', target_database=target))
    assert not restored.get('failed'), restored.get('msg')
    assert restored['row_counts'] == {'PATIENTS': ROWS}
    assert fb_state(firebird_server, 'ksamu_copy') == fb_state(firebird_server, 'ksamu')

    flip_byte(path)
    refused = run_task(MODULE, dict(args, state='restored', backup=path, target_database=firebird_server.path('bad')))
    assert refused.get('failed') and 'damaged' in refused['msg']
    assert not os.path.exists(firebird_server.path('bad'))
    retaken = run_task(MODULE, args)
    assert retaken['changed'] and not retaken['reused']

    wrong = run_task(MODULE, dict(args, login_password='wrong', dest=str(tmp_path / 'w')))
    assert wrong.get('failed') and 'cannot connect' in wrong['msg'] and PASSWORD not in json.dumps(wrong)
    assert not os.listdir(str(tmp_path / 'w'))


# --------------------------------------------------------------------------------------------
# SQLite and files

SQ_DIGEST = 'SELECT id, name, payload FROM patients ORDER BY id'


def sqlite_db(path):
    conn = sqlite3.connect(path)
    conn.execute('PRAGMA journal_mode=WAL')
    conn.execute('CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)')
    conn.executemany('INSERT INTO patients VALUES (?, ?, ?)',
                     [(i, 'p%d' % i, os.urandom(32)) for i in range(1, ROWS + 1)])
    conn.commit()
    return conn


@pytest.mark.parametrize('compression', ['none', 'zstd'])
def test_sqlite_backup_while_open_and_restore(tmp_path, compression):
    db = str(tmp_path / 'app.db')
    writer = sqlite_db(db)  # stays open, WAL not checkpointed: the backup API must still see every row
    dest = str(tmp_path / 'sq')
    args = dict(engine='sqlite', path=db, dest=dest, compression=compression, label='l', verify='restore')
    assert run_task(MODULE, args, check=True)['changed'] and not os.path.exists(dest)
    result = run_task(MODULE, args)
    assert not result.get('failed'), result.get('msg')
    path = result['backup_path']
    assert path.endswith('.sqlite' if compression == 'none' else '.sqlite.zst')
    assert manifest_of(path)['sha256'] == sha256_of(path)
    assert result['row_counts'] == {'patients': ROWS}
    assert run_task(MODULE, args)['reused'] is True

    copy = str(tmp_path / 'restored.db')
    restored = run_task(MODULE, dict(args, state='restored', target_database=copy))
    assert not restored.get('failed'), restored.get('msg')
    assert rows_digest(sqlite3.connect(copy).cursor(), SQ_DIGEST) == rows_digest(writer.cursor(), SQ_DIGEST)

    flip_byte(path)
    assert 'damaged' in run_task(MODULE, dict(args, state='restored', target_database=copy + '2'))['msg']
    assert not os.path.exists(copy + '2')
    assert run_task(MODULE, args)['reused'] is False
    writer.close()


def make_folder(root, files=40):
    os.makedirs(os.path.join(root, 'seg0'))
    for i in range(files):
        with open(os.path.join(root, 'seg0' if i % 2 else '', 'c%d.dat' % i), 'wb') as handle:
            handle.write(os.urandom(100 + i))
    return root


def folder_state(root):
    out = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            full = os.path.join(folder, name)
            out[os.path.relpath(full, root)] = sha256_of(full)
    return out


def test_files_backup_and_restore(tmp_path):
    src = make_folder(str(tmp_path / 'derby'))
    dest = str(tmp_path / 'fb')
    args = dict(engine='files', path=src, dest=dest, compression='gzip', verify='restore', label='pre')
    result = run_task(MODULE, args)
    assert not result.get('failed'), result.get('msg')
    assert result['backup_path'].endswith('.tar.gz')
    assert result['row_counts']['entries'] == 42
    assert run_task(MODULE, args)['reused'] is True
    # roll back a damaged folder in place
    original = folder_state(src)
    os.unlink(os.path.join(src, 'c0.dat'))
    with open(os.path.join(src, 'new.dat'), 'w', encoding='utf-8') as handle:
        handle.write('upgrade leftovers')
    restored = run_task(MODULE, dict(args, state='restored'))
    assert not restored.get('failed'), restored.get('msg')
    assert folder_state(src) == original
    assert sorted(os.listdir(str(tmp_path))) == ['derby', 'fb']
    flip_byte(result['backup_path'])
    assert run_task(MODULE, args)['reused'] is False


def test_files_disk_full_mid_write(tmp_path, tmpfs):
    # 2500 files of 100 bytes: 250 kB of data pass the space check, the tar (512-byte blocks) does not fit in 1 MB
    src = str(tmp_path / 'many')
    os.mkdir(src)
    for i in range(2500):
        with open(os.path.join(src, 'f%04d' % i), 'wb') as handle:
            handle.write(b'x' * 100)
    dest = tmpfs('full')
    result = run_task(MODULE, dict(engine='files', path=src, dest=dest))
    assert result.get('failed'), result
    assert 'no space left' in result['msg'].lower(), result['msg']
    assert listing(dest) == []


def test_unknown_engine_and_missing_dest_parent(tmp_path):
    result = run_task(MODULE, dict(engine='db2', database='x', dest=str(tmp_path)))
    assert result.get('failed') and 'engine' in result['msg']
    result = run_task(MODULE, dict(engine='sqlite', path=str(tmp_path / 'missing.db'), dest=str(tmp_path / 'a' / 'b')))
    assert result.get('failed') and 'does not exist' in result['msg']
    assert listing(str(tmp_path)) == []


# --------------------------------------------------------------------------------------------
# SQL Server: no server runs here; the module runs for real against the sqlcmd double (tests/integration/sqlcmd_double.py)

def mssql_env(bindir):
    return {'PATH': os.pathsep.join([bindir, os.path.dirname(sys.executable), os.environ.get('PATH', '')])}


def test_mssql_backup_verify_and_rollback_through_sqlcmd(tmp_path):
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir, {'product_version': '16.0.4135.4', 'queries': {},
                                   'databases': {"Image]Server's": {'tables': {'dbo.Study': 12, 'dbo.Series': 40}}}})
    dest = str(tmp_path / 'bk')
    args = dict(engine='mssql', database="Image]Server's", login_user='backup_op', login_password='Sql-S3cret!',
                dest=dest, label='pre-13.2', verify='restore')
    result = run_task(MODULE, args, env=mssql_env(bindir))
    assert not result.get('failed'), result.get('msg')
    calls = sqlcmd_double.calls(bindir)
    statements = [c['statement'] for c in calls if c['statement']]
    tmp = [s for s in statements if s.startswith('BACKUP DATABASE')][0]
    backup_file = tmp.split("TO DISK = N'")[1].split("'")[0]
    assert tmp == ("BACKUP DATABASE [Image]]Server's] TO DISK = N'%s' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT, NO_COMPRESSION,"
                   " NAME = N'pre-13.2'" % backup_file)
    assert "RESTORE VERIFYONLY FROM DISK = N'%s' WITH CHECKSUM" % backup_file in statements
    # the password reached sqlcmd only through its environment
    assert all(c['password_in_env'] and 'Sql-S3cret!' not in json.dumps(c['argv']) for c in calls)
    assert all(c['argv'][:2] == ['-U', 'backup_op'] and '-x' in c['argv'] and '-P' not in c['argv'] for c in calls if c['statement'])
    # what SQL Server wrote is what the manifest describes (the double writes the file as the server would)
    assert manifest_of(result['backup_path'])['sha256'] == sha256_of(result['backup_path'])
    assert result['row_counts'] == {'dbo.Series': 40, 'dbo.Study': 12}
    assert sqlcmd_double.read_state(bindir)['databases'].keys() == {"Image]Server's"}  # the scratch copy was dropped

    # the upgrade changed the data; the rollback restores it over the database, other sessions ended first
    state = sqlcmd_double.read_state(bindir)
    state['databases']["Image]Server's"]['tables']['dbo.Study'] = 99
    sqlcmd_double.write_state(bindir, state)
    restored = run_task(MODULE, dict(args, state='restored', verify='quick'), env=mssql_env(bindir))
    assert not restored.get('failed'), restored.get('msg')
    state = sqlcmd_double.read_state(bindir)
    assert state['databases'] == {"Image]Server's": {'tables': {'dbo.Series': 40, 'dbo.Study': 12}}}
    assert state['events'][-3:] == ["single_user Image]Server's", "restored Image]Server's from %s" % result['backup_path'],
                                    "multi_user Image]Server's"]


def test_mssql_unsafe_name_and_server_error(tmp_path):
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir)
    dest = str(tmp_path / 'bk')
    refused = run_task(MODULE, dict(engine='mssql', database='pmod\nGO\nDROP DATABASE pmod', dest=dest), env=mssql_env(bindir))
    assert refused.get('failed') and 'control character' in refused['msg'], refused
    assert sqlcmd_double.calls(bindir) == [] and listing(str(tmp_path)) == ['bin']
    # Windows authentication (-E) against a database the server does not have: SQL Server's own message, nothing left
    missing = run_task(MODULE, dict(engine='mssql', database='NoSuchDb', login_instance='SQLEXPRESS', dest=dest),
                       env=mssql_env(bindir))
    assert missing.get('failed') and "Database 'NoSuchDb' does not exist" in missing['msg'], missing
    backup_call = [c for c in sqlcmd_double.calls(bindir) if (c['statement'] or '').startswith('BACKUP')][0]
    assert backup_call['argv'][:3] == ['-E', '-S', 'tcp:127.0.0.1\\SQLEXPRESS'] and not backup_call['password_in_env']
    assert listing(dest) == []


# --------------------------------------------------------------------------------------------
# engine command: a tiny real stand-in for a vendor's backup program, real files and checksums

VENDOR_BACKUP = '''\
import os, sys, time, zipfile
data, out = sys.argv[1], sys.argv[2]
if os.environ.get('VENDOR_MODE') == 'fail':
    print('ca-backup: the database is locked by user 7'); sys.exit(3)
if os.environ.get('VENDOR_MODE') == 'nothing':
    print('ca-backup: nothing to back up'); sys.exit(0)
assert os.environ.get('CA_PASSWORD') == 'Vend0r!', 'no password'
name = os.path.join(out, 'conaktiv_%d.cab' % time.time_ns())
with zipfile.ZipFile(name, 'w') as z:
    for f in sorted(os.listdir(data)):
        z.write(os.path.join(data, f), f)
print('ca-backup: wrote', name)
'''
VENDOR_VERIFY = 'import sys, zipfile\nsys.exit(0 if zipfile.ZipFile(sys.argv[1]).testzip() is None else 4)\n'
VENDOR_RESTORE = '''\
import os, sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
open(os.path.join(sys.argv[2], 'restored-by-vendor'), 'w').close()
'''


def vendor(tmp_path):
    folder = tmp_path / 'vendor'
    (folder / 'data').mkdir(parents=True)
    (folder / 'Backup').mkdir()
    for name, text in (('backup.py', VENDOR_BACKUP), ('verify.py', VENDOR_VERIFY), ('restore.py', VENDOR_RESTORE)):
        (folder / name).write_text(text)
    for i in range(3):
        (folder / 'data' / ('user%d.dat' % i)).write_bytes(os.urandom(2000 + i))
    return folder


def command_args(folder, dest, **extra):
    args = dict(engine='command', database='conaktiv', dest=dest, label='pre-7.1', login_password='Vend0r!',
                command=dict(argv=[sys.executable, str(folder / 'backup.py'), str(folder / 'data'), str(folder / 'Backup')],
                             output=str(folder / 'Backup' / '*.cab'), password_env='CA_PASSWORD', timeout=60,
                             verify_argv=[sys.executable, str(folder / 'verify.py'), '{backup}']))
    args.update(extra)
    return args


def test_command_engine_backup_verify_and_restore(tmp_path):
    folder = vendor(tmp_path)
    dest = str(tmp_path / 'bk')
    result = run_task(MODULE, command_args(folder, dest, verify='restore'))
    assert not result.get('failed'), result.get('msg')
    written = sorted(os.listdir(str(folder / 'Backup')))
    assert len(written) == 1 and result['manifest']['members'] == written
    cab = str(folder / 'Backup' / written[0])
    manifest = manifest_of(result['backup_path'])
    # the manifest holds the real checksum of what the program wrote, and of the stored archive
    assert manifest['written'] == {written[0]: {'size': os.path.getsize(cab), 'sha256': sha256_of(cab)}}
    assert manifest['sha256'] == sha256_of(result['backup_path']) and manifest['verification']['ok'] is True
    assert any('the verify command' in check for check in manifest['verification']['checks'])
    assert 'Vend0r!' not in json.dumps(result)
    assert listing(dest) == sorted([os.path.basename(result['backup_path']), os.path.basename(result['backup_path']) + '.manifest.json'])
    # reused with its label while it still checks out
    assert run_task(MODULE, command_args(folder, dest))['reused'] is True

    # rollback by files: the program's backup is put back where it wrote it, byte for byte
    original = sha256_of(cab)
    os.unlink(cab)
    back = run_task(MODULE, command_args(folder, dest, state='restored'))
    assert not back.get('failed'), back.get('msg')
    assert sha256_of(cab) == original and sorted(os.listdir(str(folder / 'Backup'))) == written
    # rollback through the vendor's restore program, given the extracted copy
    target = tmp_path / 'restored-data'
    target.mkdir()
    args = command_args(folder, dest, state='restored')
    args['command']['restore_argv'] = [sys.executable, str(folder / 'restore.py'), '{backup}', str(target)]
    back = run_task(MODULE, args)
    assert not back.get('failed'), back.get('msg')
    assert sorted(os.listdir(str(target))) == ['restored-by-vendor', 'user0.dat', 'user1.dat', 'user2.dat']
    assert sha256_of(str(target / 'user1.dat')) == sha256_of(str(folder / 'data' / 'user1.dat'))
    assert not [n for n in listing(dest) if n.startswith('.')]


@pytest.mark.parametrize('mode, words', [
    ('fail', 'exited with 3: ca-backup: the database is locked by user 7'),
    ('nothing', 'exited with 0 but wrote nothing matching'),
])
def test_command_engine_refuses_a_failed_or_empty_backup(tmp_path, mode, words):
    folder = vendor(tmp_path)
    dest = str(tmp_path / 'bk')
    args = command_args(folder, dest)
    args['command']['environment'] = {'VENDOR_MODE': mode}
    result = run_task(MODULE, args)
    assert result.get('failed') and words in result['msg'], result
    assert listing(dest) == [] and os.listdir(str(folder / 'Backup')) == []


def test_command_engine_damaged_archive_is_not_reused(tmp_path):
    folder = vendor(tmp_path)
    dest = str(tmp_path / 'bk')
    first_run = run_task(MODULE, command_args(folder, dest))
    assert not first_run.get('failed'), first_run.get('msg')
    flip_byte(first_run['backup_path'])
    again = run_task(MODULE, command_args(folder, dest))
    assert not again.get('failed') and again['reused'] is False and again['rejected'][0]['backup_path'] == first_run['backup_path']
    assert len(os.listdir(str(folder / 'Backup'))) == 2
