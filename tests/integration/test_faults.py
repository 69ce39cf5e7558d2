"""A fault at every step of a server's downtime (issue #11): the old version keeps running, and a rerun succeeds.

Each case builds a small lab (1 server, 1 client, 500 rows), breaks the release, the database or the host the way
the real world does, runs playbooks/upgrade.yml and checks, from the real state read back, that

* the journal says the run failed AT that step (its ``failed`` entry; no step failed before it),
* the old version runs and answers: its VERSION file, Echo TS and Echo DB from ``pmodctl``, a C-ECHO to its DICOM
  node (pynetdicom), supervisord's programs RUNNING,
* the database's tables and rows equal those before the run (a full dump; what the ``pre`` migrations leave behind
  by design - their index and the history table that records them - is checked on its own),
* the site's settings (every properties file of the server and the client) are byte-equal,
* the client stayed on the old version, held back, and the report says so;

then repairs the fault (the good release, the host as it was) and runs again: server and client on the new version.
Nothing in the product knows about these faults: there is no test-only hook.
"""
import hashlib
import os
import re
import signal
import sqlite3
import subprocess

import pytest

from labtools import Lab  # noqa: E402  pylint: disable=wrong-import-position
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error,wrong-import-order

pynetdicom = pytest.importorskip('pynetdicom')
from pynetdicom.sop_class import Verification  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

OLD, NEW = build_lab.OLD_VERSION, build_lab.NEW_VERSION
ROWS = 500
HISTORY = 'clinops_schema_history'     # profiles/pmod.yml migrations.history_table
PRE_INDEX = 'series_modality'          # what the release's pre migration V4.3.1 creates


# ------------------------------------------------------------------------------------------------- the lab and its host

@pytest.fixture
def lab(tmp_path):
    root = str(tmp_path / 'lab')
    inventory = build_lab.build(root, clients=1, servers=1, rows=ROWS, quiet=True)
    site = Lab(root, inventory)
    site.mounts = []
    site.set_var('server_upgrade_verify_wait', 10)    # a failing health check costs 10 s, not the profile's 60
    yield site
    for path in reversed(site.mounts):
        subprocess.run(['umount', '--lazy', path], check=False)
    build_lab.teardown(root, quiet=True)


def mount(lab, path, *args):
    """Mount ``args`` on ``path`` (unmounted again by the repair or the fixture's teardown)."""
    subprocess.run(['mount'] + list(args) + [path], check=True)
    lab.mounts.append(path)


def umount(lab, path):
    # lazily: the services started in the folder keep it as their working folder (the same files, mounted or not)
    subprocess.run(['umount', '--lazy', path], check=True)
    lab.mounts.remove(path)


def release(lab, edit=None, top=None):
    """Publish the new release (tarball and its sha256, as the vendor publishes them) with ``edit`` applied."""
    files = build_lab.release_files(NEW)
    if edit:
        edit(files)
    build_lab.make_release(lab.root, NEW, files=files, top=top)


def replace_in(files, name, old, new):
    data, mode = files[name]
    assert old.encode() in data, (name, old)
    files[name] = (data.replace(old.encode(), new.encode()), mode)


def good_release(lab):
    build_lab.make_release(lab.root, NEW)


# ------------------------------------------------------------------------------------------------- the faults

def break_stage(lab):
    # the vendor renamed the release's top folder (PMOD-4.4.0/ instead of pmod-4.4.0/) and published its checksum
    release(lab, top='PMOD-%s' % NEW)


def break_migrate_pre(lab):
    # a pre migration the database refuses (a column that does not exist)
    release(lab, lambda f: replace_in(f, 'sql/V4.3.1__series_modality_index.sql', 'ON series (modality)', 'ON series (modality_code)'))


def break_stop(lab):
    # a hung transaction server: it accepts connections but never answers, so the drain cannot count the users
    pid = int(lab.supervisorctl('pid', 'pmod-ts').stdout.strip())
    os.kill(pid, signal.SIGSTOP)


def break_backup(lab):
    # the backup folder is its own file system, and it is full
    mount(lab, os.path.join(lab.root, 'hosts', 'server1', 'backups'), '-t', 'tmpfs', '-o', 'size=4k', 'tmpfs')


def repair_backup(lab):
    umount(lab, os.path.join(lab.root, 'hosts', 'server1', 'backups'))


def break_swap(lab):
    # the installation folder is a mount point of its own (its own volume): it cannot be renamed (EBUSY)
    mount(lab, lab.install('server1'), '--bind', lab.install('server1'))


def repair_swap(lab):
    umount(lab, lab.install('server1'))


def _site_config(lab):
    return os.path.join(lab.root, 'hosts', 'server1', 'etc', 'Config.properties')


def break_prefs(lab):
    # the site keeps its Config.properties outside the installation and links it in; prefs_migrate refuses a link
    # that points outside the installation it carries settings from
    inst_file = os.path.join(lab.install('server1'), 'properties', 'Config.properties')
    os.makedirs(os.path.dirname(_site_config(lab)))
    os.rename(inst_file, _site_config(lab))
    os.symlink(_site_config(lab), inst_file)


def repair_prefs(lab):
    inst_file = os.path.join(lab.install('server1'), 'properties', 'Config.properties')
    os.unlink(inst_file)
    os.rename(_site_config(lab), inst_file)


def break_migrate_offline(lab):
    build_lab.make_release(lab.root, NEW, broken=True)     # the lab's --broken-migration


def break_start(lab):
    # the new transaction server does not even compile: supervisord gives up on it (FATAL)
    release(lab, lambda f: replace_in(f, 'bin/pmod_ts.py', 'class Handler(', 'class Handler(:'))


def break_verify(lab):
    # the vendor forgot to bump the transaction server's version: it starts and answers, but "Echo TS" names 4.3.9,
    # not the release it came with (a DICOM server that rejects the site's AE title fails already at the start: its
    # start is judged by a C-ECHO)
    release(lab, lambda f: replace_in(f, 'bin/pmod_ts.py', 'VERSION = release_version()', "VERSION = '4.3.9'"))


def break_migrate_post(lab):
    # a post migration the database refuses after the new version started
    release(lab, lambda f: replace_in(f, 'sql/V4.4.0__drop_legacy_notes.sql', "SET version = '4.4.0'", "SET schema_version = '4.4.0'"))


LOCKING_LS = '''
import os
import sys
LOCK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'var', 'pmod-ls.lock')
os.makedirs(os.path.dirname(LOCK), exist_ok=True)
try:
    os.close(os.open(LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
except FileExistsError:
    print('PMOD license server: %s exists, another license server runs' % LOCK, flush=True)
    sys.exit(1)
import atexit
atexit.register(os.unlink, LOCK)    # never runs on SIGTERM: the lock outlives every stop
'''


def break_restart_after_verify(lab):
    # the new license server leaves a stale lock behind when stopped: it starts once, and fails when restarted
    release(lab, lambda f: replace_in(f, 'bin/pmod_ls.py', '\n\nclass Handler(', LOCKING_LS + '\n\nclass Handler('))


# id: (break, repair, the step the journal names as failed, what its note says, the server's result)
FAULTS = {
    'stage': (break_stage, good_release, 'stage', r'PMOD-4\.4\.0|pmod-4\.4\.0', 'failed'),
    'pre_migrations': (break_migrate_pre, good_release, 'migrate_pre', r'modality_code', 'failed'),
    'stop': (break_stop, None, 'stop', r'drain', 'rolled_back'),
    'backup': (break_backup, repair_backup, 'backup', r'No space left|ENOSPC|space', 'rolled_back'),
    'swap': (break_swap, repair_swap, 'swap', r'busy|EBUSY', 'rolled_back'),
    'prefs': (break_prefs, repair_prefs, 'prefs', r'is a symlink to .* refused', 'rolled_back'),
    'offline_migrations': (break_migrate_offline, good_release, 'migrate_offline', r'no_such_column', 'rolled_back'),
    'start': (break_start, good_release, 'start', r'pmod-ts', 'rolled_back'),
    'verify': (break_verify, good_release, 'verify', r'Echo TS.*4\.3\.9', 'rolled_back'),
    'post_migrations': (break_migrate_post, good_release, 'migrate_post', r'schema_version', 'rolled_back'),
    'restart_after_verify': (break_restart_after_verify, good_release, 'restart_after_verify', r'pmod-ls', 'rolled_back'),
}


# ------------------------------------------------------------------------------------------------- what is read back

def settings(lab):
    """sha256 of every properties file of the server's and the client's installation (read through links)."""
    found = {}
    for host in lab.hosts:
        folder = os.path.join(lab.install(host), 'properties')
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), 'rb') as handle:
                found['%s/%s' % (host, name)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def product_dump(lab):
    """The database's full dump without what the pre migrations leave by design (their index, the history tables)."""
    return [line for line in lab.dump().splitlines() if HISTORY not in line and PRE_INDEX not in line]


def recorded_migrations(lab):
    conn = sqlite3.connect(lab.db)
    try:
        if not conn.execute("SELECT name FROM sqlite_master WHERE name = ?", (HISTORY,)).fetchone():
            return []
        return sorted(r[0] for r in conn.execute('SELECT version FROM %s' % HISTORY))
    finally:
        conn.close()


def c_echo(lab):
    ae = pynetdicom.AE(ae_title='FAULT_TEST')
    ae.add_requested_context(Verification)
    assoc = ae.associate('127.0.0.1', lab.server['pmod_ports']['dicom'], ae_title=lab.server['pmod_dicom_aet'])
    try:
        assert assoc.is_established, 'the DICOM node %s does not accept an association' % lab.server['pmod_dicom_aet']
        return assoc.send_c_echo().Status
    finally:
        if assoc.is_established:
            assoc.release()


def this_attempt(lab):
    journal = lab.journal()
    begins = [i for i, e in enumerate(journal) if e['step'] == 'begin' and e['result'] == 'started']
    return journal[begins[-1]:] if begins else journal


# ------------------------------------------------------------------------------------------------- the test

@pytest.mark.parametrize('fault', list(FAULTS))
def test_a_fault_leaves_the_old_version_running_and_a_rerun_succeeds(lab, fault):
    breaks, repair, step, note, result_word = FAULTS[fault]
    dump, site, pids = product_dump(lab), settings(lab), lab.supervisor_pids()
    breaks(lab)

    result = lab.run()
    assert result.rc != 0, result
    attempt = this_attempt(lab)
    failed = [e for e in attempt if e['result'] == 'failed']
    assert failed and failed[0]['step'] == step, (failed, attempt)
    assert re.search(note, failed[0].get('message') or '', re.I), failed[0]
    assert attempt[-1]['step'] == 'finish' and attempt[-1]['result'] == result_word, attempt[-1]
    assert not os.path.exists(os.path.join(lab.root, 'hosts', 'server1', 'state', 'upgrade.lock'))

    # the old version runs and answers
    assert lab.version('server1') == OLD
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS %s' % OLD), lab.ctl('echo-ts')
    assert lab.ctl('echo-db') == 'OK schema=%s studies=%d' % (OLD, ROWS // 2)
    assert c_echo(lab) == 0x0000
    assert lab.supervisor_states() == {'pmod-ds': 'RUNNING', 'pmod-ls': 'RUNNING', 'pmod-ts': 'RUNNING'}
    if result_word == 'failed':    # nothing was stopped
        assert lab.supervisor_pids() == pids
    # the database as before, the pre migrations (and only they) kept and recorded
    assert product_dump(lab) == dump
    assert set(recorded_migrations(lab)) <= {OLD, '4.3.1'}
    # the site's settings byte-equal, the client held back
    assert settings(lab) == site
    assert lab.version('client1') == OLD
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == result_word, report['server1']
    assert report['client1']['result'] == 'held_back', report['client1']

    if repair:
        repair(lab)
    result = lab.run()
    assert result.rc == 0, result
    assert lab.version('server1') == NEW and lab.version('client1') == NEW
    assert lab.ctl('echo-ts').startswith('OK PMOD-TS %s' % NEW)
    assert lab.ctl('echo-db') == 'OK schema=%s studies=%d' % (NEW, ROWS // 2)
    assert c_echo(lab) == 0x0000
    report = {h['host']: h for h in lab.report()['hosts']}
    assert report['server1']['result'] == 'upgraded' and report['client1']['result'] == 'upgraded', report
