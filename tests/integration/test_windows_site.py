"""A whole site upgraded through the Windows implementation of the upgrade engine (issue #12).

No Windows host runs here. The lab's server and two clients are marked as Windows hosts
(``clinops_upgrade_host_os: windows``), so ``upgrade_cutover``'s action plugin runs the engine on the controller with
its WindowsHost, and every ``ansible.windows.*`` call it makes is carried out by the test doubles in
``tests/integration/doubles`` (first in ANSIBLE_COLLECTIONS_PATH): Python modules acting on the lab's folders and its
supervisor programs, refusing any option the real module does not document. The releases are zips, as on Windows.

First a release whose transaction server does not start: the server's upgrade fails at ``start`` and ``op: rollback``
puts the old version back (running, answering, its settings and database as before). Then the good release: the
server and both clients on the new version, the site's settings carried over. What is asserted is read back from the
lab: VERSION files, supervisord's programs, the transaction server's answers, a C-ECHO, bytes of the settings files,
the database's rows, the journal on each host.

The database steps on a Windows host (no lab needed, doubles of the vendor's programs in temp folders): SQL Server
backups and restores through sqlcmd on the host; the ``migrate_*`` steps with the vendor's tool (schema_update's
command mode) run on the host, journaled as on a POSIX host, applied once; what cannot run there refused in words.
"""
import hashlib
import json
import os
import sys
import tarfile
import zipfile

import pytest
import yaml

from harness import COLLECTIONS, run_playbook
from labtools import Lab
from servers import PASSWORD
import sqlcmd_double  # noqa: E402  pylint: disable=wrong-import-position,import-error,wrong-import-order
import build_lab  # noqa: E402  pylint: disable=wrong-import-position,import-error,wrong-import-order
from ansible_collections.clinops.upgrade.plugins.module_utils import journal as _journal

pynetdicom = pytest.importorskip('pynetdicom')
from pynetdicom.sop_class import Verification  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLES = os.path.join(HERE, 'doubles')
OLD, NEW = build_lab.OLD_VERSION, build_lab.NEW_VERSION
PROFILE = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.dirname(HERE)), 'profiles', 'pmod.yml'), encoding='utf-8'))


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('winsite') / 'lab')
    inventory = build_lab.build(root, clients=2, servers=1, rows=200, quiet=True)
    lab = Lab(root, inventory)
    services = os.path.join(root, 'windows-services.json')
    with open(services, 'w', encoding='utf-8') as handle:
        json.dump(dict((name, lab.server['upgrade_supervisor_config']) for name in ('pmod-ts', 'pmod-ls', 'pmod-ds')), handle)
    lab.env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'CLINOPS_WIN_DOUBLE_SERVICES': services,
               'ANSIBLE_PIPELINING': 'true'}  # one round trip per win_* call, as over WinRM
    zip_release(lab, OLD)
    yield lab
    build_lab.teardown(root, quiet=True)


def zip_release(lab, version):
    """The release tarball the lab published, as the zip a Windows vendor ships (same members, same modes)."""
    base = os.path.join(lab.root, 'releases', 'pmod-%s' % version)
    with tarfile.open(base + '.tar.gz') as tar, zipfile.ZipFile(base + '.zip', 'w', zipfile.ZIP_DEFLATED) as zipped:
        for member in tar.getmembers():
            info = zipfile.ZipInfo(member.name + ('/' if member.isdir() else ''))
            info.external_attr = (member.mode & 0o777) << 16
            zipped.writestr(info, b'' if member.isdir() else tar.extractfile(member).read())
    return base + '.zip'


def host_dir(lab, host):
    return os.path.dirname(os.path.dirname(lab.install(host)))


def begin(lab, host, run_id):
    """Open an attempt in the host's journal (the roles' begin step)."""
    _journal.Journal(os.path.join(host_dir(lab, host), 'state', 'journal.jsonl'), NEW, run_id).record(
        'begin', 'ok', data={'from_version': OLD})


def journal(lab, host):
    return _journal.read_entries(os.path.join(host_dir(lab, host), 'state', 'journal.jsonl'))


def journal_entries(path):
    return _journal.read_entries(path)


def common(lab, host, run_id, items):
    inst = lab.install(host)
    return dict(journal=os.path.join(host_dir(lab, host), 'state', 'journal.jsonl'), run_id=run_id, target=NEW,
                install_root=inst, artifact=os.path.join(lab.root, 'releases', 'pmod-%s.zip' % NEW),
                staging_dir=inst + '_staging', top_dir='pmod-%s' % NEW,
                old_artifact=os.path.join(lab.root, 'releases', 'pmod-%s.zip' % OLD), old_top_dir='pmod-%s' % OLD,
                defaults_dir='properties', prefs=dict(items=items, backup_dir=os.path.join(host_dir(lab, host), 'backups', run_id)))


def server_args(lab, run_id):
    ports, aet = lab.server['pmod_ports'], lab.server['pmod_dicom_aet']
    args = common(lab, 'server1', run_id, PROFILE['preferences']['server'])
    args.update(steps=['stage', 'configure', 'stop', 'swap', 'prefs', 'start', 'verify', 'cleanup'],
                start_scripts=PROFILE['start_scripts'], start_script_interpreter=sys.executable, product='PMOD',
                services=[dict(name='pmod-ds', port=ports['dicom'], timeout=30, kill_after=True, backend='supervisor'),
                          dict(name='pmod-ts', port=ports['ts'], timeout=30, kill_after=True, backend='supervisor'),
                          dict(name='pmod-ls', port=ports['ls'], timeout=30, kill_after=True, backend='supervisor')],
                checks=[dict(name='Echo TS', type='command', expect='^OK PMOD-TS {version}',
                             argv=[sys.executable, 'bin/pmodctl.py', 'echo-ts', '--properties', 'properties/Config.properties']),
                        dict(name='C-ECHO', type='dicom', host='127.0.0.1', port=ports['dicom'], called_aet=aet)],
                verify_wait=20)
    return args


def client_args(lab, host, run_id):
    args = common(lab, host, run_id, PROFILE['preferences']['client'])
    args.update(steps=['stage', 'swap', 'prefs', 'verify', 'cleanup'],
                checks=[dict(name='TS reachable', type='tcp', host='127.0.0.1', port=lab.server['pmod_ports']['ts']),
                        dict(name='Echo TS from the client', type='command', expect='^OK PMOD-TS',
                             argv=[sys.executable, 'bin/pmodctl.py', 'echo-ts', '--properties', 'properties/Config.properties'])],
                verify_wait=20)
    return args


def run(lab, hosts_args, tmp_path, name, check=False):
    """One play per group of hosts (the server, then the clients), every host marked Windows; results by host."""
    inventory = {'all': {'hosts': dict((host, {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
                                               'clinops_upgrade_host_os': 'windows', 'cutover': args})
                                       for host, args in hosts_args.items())}}
    path = str(tmp_path / ('%s.yml' % name))
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(inventory, handle)
    play = [{'name': name, 'hosts': 'all', 'gather_facts': False,
             'tasks': [{'name': 'cutover', 'clinops.upgrade.upgrade_cutover': '{{ cutover }}', 'ignore_errors': True}]}]
    result = run_playbook(play, inventory=path, env=lab.env, check=check)
    return dict((host, result.result('cutover', host)) for host in hosts_args)


def settings(lab):
    found = {}
    for host in lab.hosts:
        folder = os.path.join(lab.install(host), 'properties')
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), 'rb') as handle:
                found[(host, name)] = handle.read()
    return found


def c_echo(lab):
    ae = pynetdicom.AE(ae_title='CLINOPS_TEST')
    ae.add_requested_context(Verification)
    assoc = ae.associate('127.0.0.1', lab.server['pmod_ports']['dicom'], ae_title=lab.server['pmod_dicom_aet'])
    try:
        return assoc.is_established and assoc.send_c_echo().Status == 0
    finally:
        if assoc.is_established:
            assoc.release()


def test_a_database_step_on_a_windows_host_is_refused_before_anything_stops(site, tmp_path):
    pids = site.supervisor_pids()
    args = dict(server_args(site, 'win-refused'), backup=dict(engine='sqlite', path=site.db,
                                                              dest=os.path.join(host_dir(site, 'server1'), 'backups')))
    refused = run(site, {'server1': args}, tmp_path, 'refused')['server1']
    assert refused.get('failed') and refused['host_os'] == 'windows'
    # sqlite is read with Python's sqlite3 where the module runs: an engine that cannot run on a Windows host
    assert 'invalid input, nothing was stopped' in refused['msg'] and 'engine sqlite is not carried out on Windows hosts' in refused['msg']
    assert site.supervisor_pids() == pids and site.version('server1') == OLD
    assert not os.path.exists(site.install('server1') + '_staging')


def test_a_release_whose_service_does_not_start_is_rolled_back_on_the_windows_path(site, tmp_path):
    before_settings, before_rows = settings(site), site.product_rows()
    old_pids = site.supervisor_pids()
    # the new transaction server does not even compile: supervisord gives up on it, win_service's start fails
    files = build_lab.release_files(NEW)
    data, mode = files['bin/pmod_ts.py']
    files['bin/pmod_ts.py'] = (data.replace(b'class Handler(', b'class Handler(:'), mode)
    build_lab.make_release(site.root, NEW, files=files)
    zip_release(site, NEW)
    begin(site, 'server1', 'win-bad')

    results = run(site, {'server1': server_args(site, 'win-bad')}, tmp_path, 'upgrade')
    failed = results['server1']
    assert failed.get('failed') and failed['failed_step'] == 'start', failed
    assert failed['host_os'] == 'windows' and 'pmod-ts' in failed['msg']
    assert [s['step'] for s in failed['steps']] == ['stage', 'configure', 'stop', 'swap', 'prefs', 'start']

    # as the role's rescue calls it: the engine journaled the failed step itself
    rollback = dict(server_args(site, 'win-bad'), op='rollback', failure=failed['msg'])
    back = run(site, {'server1': rollback}, tmp_path, 'rollback')['server1']
    assert not back.get('failed'), back
    assert back['result'] == 'rolled_back' and 'put back' in back['restored']

    # the old version runs and answers, read back from the lab
    assert site.version('server1') == OLD
    assert set(site.supervisor_states().values()) == {'RUNNING'}
    assert site.supervisor_pids() != old_pids  # really stopped and started again
    assert site.ctl('echo-ts').startswith('OK PMOD-TS %s' % OLD), site.ctl('echo-ts')
    assert site.ctl('echo-db').startswith('OK'), site.ctl('echo-db')
    assert c_echo(site)
    assert settings(site) == before_settings
    assert site.product_rows() == before_rows
    parent = os.path.dirname(site.install('server1'))
    assert 'PMOD_failed_%s_1' % NEW in os.listdir(parent)
    last = journal(site, 'server1')[-1]
    assert last['step'] == 'finish' and last['result'] == 'rolled_back'
    assert [c for c in site.clients if site.version(c) != OLD] == []


def test_the_site_is_upgraded_through_the_windows_host(site, tmp_path):
    build_lab.make_release(site.root, NEW)  # the good release again
    zip_release(site, NEW)
    before_rows = site.product_rows()
    for host in site.hosts:
        begin(site, host, 'win-good')

    # check mode: the plan, read from the journal on the host; nothing moves
    entries = len(journal(site, 'server1'))
    plan = run(site, {'server1': server_args(site, 'win-good')}, tmp_path, 'plan', check=True)['server1']
    assert not plan.get('failed'), plan
    assert plan['changed'] and plan['pending'] == server_args(site, 'win-good')['steps'] and plan['steps'] == []
    assert site.version('server1') == OLD and len(journal(site, 'server1')) == entries
    assert not os.path.exists(site.install('server1') + '_staging')

    server = run(site, {'server1': server_args(site, 'win-good')}, tmp_path, 'server')['server1']
    assert not server.get('failed'), server
    assert server['host_os'] == 'windows'
    assert [s['result'] for s in server['steps']] == ['ok'] * 8
    clients = run(site, dict((c, client_args(site, c, 'win-good')) for c in site.clients), tmp_path, 'clients')
    for host, result in clients.items():
        assert not result.get('failed'), (host, result)

    for host in site.hosts:
        assert site.version(host) == NEW, host
        entries = [e for e in journal(site, host) if e['run_id'] == 'win-good' and e['result'] == 'ok']
        assert 'cleanup' in [e['step'] for e in entries]
        assert not os.path.exists(site.install(host) + '_staging')
    assert set(site.supervisor_states().values()) == {'RUNNING'}
    assert site.ctl('echo-ts').startswith('OK PMOD-TS %s' % NEW), site.ctl('echo-ts')
    assert c_echo(site)
    for client in site.clients:
        assert site.ctl('echo-ts', host=client).startswith('OK PMOD-TS %s' % NEW)
    # the site's customised settings were carried over into the new installations, in their own encoding
    with open(os.path.join(site.install('server1'), 'properties', 'Config.properties'), 'rb') as handle:
        config = handle.read().decode('iso-8859-1')
    assert 'license.seats=25' in config and 'pacs-admin@example.invalid' in config
    assert 'ts.port=%s' % site.server['pmod_ports']['ts'] in config.replace(' ', '')
    assert site.product_rows() == before_rows  # no database step runs on the Windows path


# -- a database on a Windows host: SQL Server through sqlcmd on the host (no lab needed: the sqlcmd double) ----------

def windows_play(hosts_args, tmp_path, name, env, posix=()):
    """upgrade_cutover on hosts marked Windows (those in ``posix`` excepted: the module on the host, as on Linux), each
    win_* call carried out by the doubles; results by host."""
    hosts = {}
    for host, args in hosts_args.items():
        hosts[host] = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable, 'cutover': args}
        if host not in posix:
            hosts[host]['clinops_upgrade_host_os'] = 'windows'
    inventory = {'all': {'hosts': hosts}}
    path = str(tmp_path / ('%s.yml' % name))
    with open(path, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(inventory, handle)
    play = [{'name': name, 'hosts': 'all', 'gather_facts': False,
             'tasks': [{'name': 'cutover', 'clinops.upgrade.upgrade_cutover': '{{ cutover }}', 'ignore_errors': True}]}]
    result = run_playbook(play, inventory=path, env=env)
    return dict((host, result.result('cutover', host)) for host in hosts_args)


def test_a_sql_server_backup_and_its_restore_run_on_the_windows_host(tmp_path):
    """The backup step with engine mssql on a Windows host: BACKUP ... WITH COPY_ONLY, CHECKSUM and RESTORE VERIFYONLY
    run by sqlcmd on the host (win_powershell script run), the file SQL Server wrote hashed on the host (win_stat
    sha256), the manifest written there; the rollback after a schema step restores the database from it."""
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir, {'product_version': '16.0.4135.4', 'queries': {},
                                   'databases': {'pmod': {'tables': {'dbo.Study': 12, 'dbo.Series': 40}}}})
    root = tmp_path / 'host'
    (root / 'app').mkdir(parents=True)
    (root / 'app' / 'VERSION').write_text(OLD + '\n')
    (root / 'state').mkdir()
    journal_path = str(root / 'state' / 'journal.jsonl')
    _journal.Journal(journal_path, NEW, 'win-db').record('begin', 'ok', data={'from_version': OLD})
    dest = str(root / 'backups')
    args = dict(journal=journal_path, run_id='win-db', target=NEW, install_root=str(root / 'app'), steps=['backup'],
                backup=dict(engine='mssql', database='pmod', dest=dest, bin_dir=bindir, label='pre-' + NEW, verify='restore'))
    env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'ANSIBLE_PIPELINING': 'true'}
    done = windows_play({'server1': args}, tmp_path, 'mssql-backup', env)['server1']
    assert not done.get('failed'), done.get('msg')
    assert done['host_os'] == 'windows'
    statements = [c['statement'] for c in sqlcmd_double.calls(bindir) if c['statement']]
    backup = [s for s in statements if s.startswith('BACKUP DATABASE')]
    assert len(backup) == 1 and 'WITH COPY_ONLY, CHECKSUM' in backup[0]
    written = backup[0].split("TO DISK = N'")[1].split("'")[0]
    assert "RESTORE VERIFYONLY FROM DISK = N'%s' WITH CHECKSUM" % written in statements
    # Windows authentication: no -U, no password anywhere
    assert all(c['argv'][0] == '-E' and not c['password_in_env'] for c in sqlcmd_double.calls(bindir) if c['statement'])
    backups = sorted(n for n in os.listdir(dest) if not n.startswith('.'))
    assert len(backups) == 2 and backups[1] == backups[0] + '.manifest.json', backups
    with open(os.path.join(dest, backups[1]), encoding='utf-8') as handle:
        manifest = json.load(handle)
    with open(os.path.join(dest, backups[0]), 'rb') as handle:
        assert manifest['sha256'] == hashlib.sha256(handle.read()).hexdigest()  # what SQL Server wrote, hashed on the host
    assert manifest['verification']['ok'] and manifest['row_counts'] == {'dbo.Series': 40, 'dbo.Study': 12}
    recorded = [e for e in journal_entries(journal_path) if e['step'] == 'backup']
    assert recorded[-1]['result'] == 'ok' and recorded[-1]['data']['backup_path'] == os.path.join(dest, backups[0])

    # the upgrade's schema step changed the data and failed: the rollback restores the database from that backup
    state = sqlcmd_double.read_state(bindir)
    state['databases']['pmod']['tables']['dbo.Study'] = 99
    sqlcmd_double.write_state(bindir, state)
    rolled = windows_play({'server1': dict(args, op='rollback', failed_step='migrate_offline')}, tmp_path, 'mssql-rollback',
                          env)['server1']
    assert not rolled.get('failed'), rolled.get('msg')
    assert 'the database was restored from %s' % os.path.join(dest, backups[0]) in rolled['restored'], rolled
    assert sqlcmd_double.read_state(bindir)['databases']['pmod']['tables'] == {'dbo.Study': 12, 'dbo.Series': 40}
    replace = [c['statement'] for c in sqlcmd_double.calls(bindir) if 'SET SINGLE_USER' in (c['statement'] or '')]
    assert replace and 'SET MULTI_USER' in replace[-1]


def test_a_backup_engine_that_cannot_run_on_windows_is_refused_in_words(tmp_path):
    """Engines that need Python, a pipeline or a driver on the host (here postgresql) and a SQL login's password are
    refused before anything runs, naming why."""
    root = tmp_path / 'host'
    (root / 'app').mkdir(parents=True)
    journal_path = str(root / 'journal.jsonl')
    base = dict(journal=journal_path, run_id='win-refuse', target=NEW, install_root=str(root / 'app'), steps=['backup'])
    env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'ANSIBLE_PIPELINING': 'true'}
    results = windows_play({
        'pg': dict(base, backup=dict(engine='postgresql', database='pmod', dest=str(root / 'bk'))),
        'sqllogin': dict(base, backup=dict(engine='mssql', database='pmod', dest=str(root / 'bk'), login_user='sa',
                                           login_password='Sql-S3cret!')),
    }, tmp_path, 'refused', env)
    assert 'engine postgresql is not carried out on Windows hosts' in results['pg']['msg']
    assert 'Windows authentication' in results['sqllogin']['msg'] and 'Sql-S3cret!' not in json.dumps(results['sqllogin'])
    assert not os.path.exists(str(root / 'bk'))


# -- migrations on a Windows host: the vendor's tool (schema_update's command mode) run on the host --------------------

# the vendor's schema tool, as ConAktiv's "structure-update" / "data-version": ROOT version | ROOT update TARGET [hang]
VENDOR_TOOL = r"""
import json, os, sys, time
root, action = sys.argv[1], sys.argv[2]
version_file = os.path.join(root, 'data-version')
if action == 'version':
    print(open(version_file).read().strip() if os.path.exists(version_file) else '')
    sys.exit(0)
target = sys.argv[3]
with open(os.path.join(root, 'runs.log'), 'a') as handle:
    handle.write(target + '\n')
if 'hang' in sys.argv[4:]:
    time.sleep(120)
if 'fail' in sys.argv[4:]:
    print('structure update failed: table Kontakte is locked', file=sys.stderr)
    sys.exit(3)
with open(version_file, 'w') as handle:
    handle.write(target + '\n')
state = os.environ.get('SQLCMD_STATE') or (sys.argv[4] if sys.argv[4:] and sys.argv[4].endswith('.json') else None)
if state:  # SQL Server's DatabaseVersion table, in the sqlcmd double's state
    with open(state) as handle:
        data = json.load(handle)
    data['queries']['SELECT MAX(Version) FROM DatabaseVersion'] = [target]
    with open(state, 'w') as handle:
        json.dump(data, handle)
"""


def vendor_host(tmp_path, name, data_version=OLD):
    """A host's folders: the installation, the journal (an attempt begun), the vendor's tool and its data version."""
    root = tmp_path / name
    (root / 'app').mkdir(parents=True)
    (root / 'app' / 'VERSION').write_text(OLD + '\n')
    (root / 'state').mkdir()
    (root / 'data').mkdir()
    (root / 'data' / 'data-version').write_text(data_version + '\n')
    tool = root / 'app' / 'schema_tool.py'
    tool.write_text(VENDOR_TOOL)
    return root


def migrate_args(root, run_id, tool_extra=(), **migrate):
    journal_path = str(root / 'state' / 'journal.jsonl')
    _journal.Journal(journal_path, NEW, run_id).record('begin', 'ok', data={'from_version': OLD})
    tool = [sys.executable, str(root / 'app' / 'schema_tool.py'), str(root / 'data')]
    spec = dict(command=tool + ['update', NEW] + list(tool_extra), version_command=tool + ['version'], target=NEW,
                command_timeout=60, engine='files', path=str(root / 'data'))  # ConAktiv's connection: its data folder
    spec.update(migrate)
    return dict(journal=journal_path, run_id=run_id, target=NEW, install_root=str(root / 'app'),
                steps=['migrate_pre', 'migrate_offline', 'migrate_post'], migrate_command_phase='post',
                migrate=dict((k, v) for k, v in spec.items() if v is not None))


def tool_runs(root):
    path = root / 'data' / 'runs.log'
    return path.read_text().split() if path.exists() else []


def migrate_entries(root, run_id):
    return [(e['step'], e['result'], e.get('data') or {}) for e in journal_entries(str(root / 'state' / 'journal.jsonl'))
            if e['run_id'] == run_id and e['step'].startswith('migrate_')]


def test_a_vendor_schema_tool_runs_once_on_the_windows_host_journaled_as_on_posix(tmp_path):
    """ConAktiv's way (migrations mode command, phase post): the vendor's tool and its version_command run on the Windows
    host through the run script, SQL Server's version_query through sqlcmd there; the same release on a POSIX host
    journals the same entries. A second attempt finds the database at the target and runs nothing."""
    bindir = str(tmp_path / 'bin')
    sqlcmd_double.install(bindir, {'product_version': '16.0.4135.4', 'databases': {'imageserver': {'tables': {}}},
                                   'queries': {'SELECT MAX(Version) FROM DatabaseVersion': [OLD]}})
    env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'ANSIBLE_PIPELINING': 'true',
           'PATH': bindir + os.pathsep + os.environ['PATH']}
    win, posix, mssql = vendor_host(tmp_path, 'win'), vendor_host(tmp_path, 'posix'), vendor_host(tmp_path, 'mssql')

    def mssql_args(run_id):  # ImageServer's way: the version in SQL Server's DatabaseVersion table
        return migrate_args(mssql, run_id, tool_extra=[sqlcmd_double.state_path(bindir)], version_command=None,
                            engine='mssql', database='imageserver', login_host='sql1.example.invalid', path=None,
                            version_query='SELECT MAX(Version) FROM DatabaseVersion')
    first = windows_play({'win': migrate_args(win, 'mig-1'), 'posix': migrate_args(posix, 'mig-1'), 'mssql': mssql_args('mig-1')},
                         tmp_path, 'migrate-1', env, posix=('posix',))
    for host, result in first.items():
        assert not result.get('failed'), (host, result.get('msg'))
    assert first['win']['host_os'] == 'windows' and first['mssql']['host_os'] == 'windows'
    assert first['posix'].get('host_os') != 'windows'
    # applied once, by the vendor's tool, on each host; the database reports the target afterwards
    for root in (win, posix, mssql):
        assert tool_runs(root) == [NEW], root
        assert (root / 'data' / 'data-version').read_text().strip() == NEW
    assert sqlcmd_double.read_state(bindir)['queries']['SELECT MAX(Version) FROM DatabaseVersion'] == [NEW]
    # the version was asked on the host, with Windows authentication, before and after the tool
    asked = [c for c in sqlcmd_double.calls(bindir) if 'DatabaseVersion' in (c['statement'] or '')]
    assert len(asked) == 2 and all(c['argv'][0] == '-E' and not c['password_in_env'] for c in asked)
    expected = [('migrate_pre', 'skipped', {}), ('migrate_offline', 'skipped', {}), ('migrate_post', 'ok', {'schema_post': [NEW]})]
    assert [e for e in migrate_entries(posix, 'mig-1') if e[1] != 'started'] == expected
    assert migrate_entries(win, 'mig-1') == migrate_entries(posix, 'mig-1') == migrate_entries(mssql, 'mig-1')

    # a second attempt (the first one finished): the database is at the target already, nothing runs, journaled the
    # same way on both paths
    for root in (win, posix, mssql):
        _journal.Journal(str(root / 'state' / 'journal.jsonl'), NEW, 'mig-1').record('finish', 'ok')
    second = windows_play({'win': migrate_args(win, 'mig-2'), 'posix': migrate_args(posix, 'mig-2'),
                           'mssql': mssql_args('mig-2')}, tmp_path, 'migrate-2', env, posix=('posix',))
    for host, result in second.items():
        assert not result.get('failed'), (host, result.get('msg'))
    for root in (win, posix, mssql):
        assert tool_runs(root) == [NEW], root
    again = [('migrate_pre', 'skipped', {}), ('migrate_offline', 'skipped', {}), ('migrate_post', 'ok', {'schema_post': []})]
    assert [e for e in migrate_entries(posix, 'mig-2') if e[1] != 'started'] == again
    assert migrate_entries(win, 'mig-2') == migrate_entries(posix, 'mig-2') == migrate_entries(mssql, 'mig-2')


def test_a_vendor_schema_tool_that_fails_hangs_or_is_missing_on_the_windows_host_fails_its_step_in_words(tmp_path):
    """The tool's exit code, command_timeout (the tool killed on the host) and a missing program each fail migrate_post
    with the reason; SQL files (migrations) and a SQL login are refused before any step runs."""
    env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'ANSIBLE_PIPELINING': 'true'}
    failing, hanging, missing = (vendor_host(tmp_path, n) for n in ('failing', 'hanging', 'missing'))
    sqlfiles, login = vendor_host(tmp_path, 'sqlfiles'), vendor_host(tmp_path, 'login')
    missing_args = migrate_args(missing, 'mig-x')
    missing_args['migrate']['command'] = [str(missing / 'app' / 'no-such-tool.exe'), 'update']
    results = windows_play({
        'failing': migrate_args(failing, 'mig-x', tool_extra=['fail']),
        'hanging': migrate_args(hanging, 'mig-x', tool_extra=['hang'], command_timeout=2),
        'missing': missing_args,
        'sqlfiles': migrate_args(sqlfiles, 'mig-x', command=None, version_command=None, migrations=str(sqlfiles / 'app'),
                                 engine='postgresql', database='pmod', path=None),
        'login': migrate_args(login, 'mig-x', version_command=None, engine='mssql', database='pmod', path=None, login_user='sa',
                              login_password='Sql-S3cret!', version_query='SELECT 1'),
    }, tmp_path, 'migrate-fail', env)
    failed = results['failing']
    assert failed['failed_step'] == 'migrate_post' and 'the command exited with 3' in failed['msg']
    assert 'table Kontakte is locked' in failed['msg'] and 'at version %s' % OLD in failed['msg']
    hung = results['hanging']
    assert hung['failed_step'] == 'migrate_post' and 'killed after command_timeout (2s)' in hung['msg'], hung['msg']
    assert (hanging / 'data' / 'data-version').read_text().strip() == OLD
    gone = results['missing']
    assert gone['failed_step'] == 'migrate_post' and 'cannot run %s' % (missing / 'app' / 'no-such-tool.exe') in gone['msg']
    for root in (failing, hanging, missing):
        assert [e[:2] for e in migrate_entries(root, 'mig-x') if e[1] != 'started'][-1] == ('migrate_post', 'failed'), root
    assert 'invalid input, nothing was stopped' in results['sqlfiles']['msg']
    assert 'migrations (SQL files) is not carried out on Windows hosts' in results['sqlfiles']['msg']
    assert 'Windows authentication' in results['login']['msg'] and 'Sql-S3cret!' not in json.dumps(results['login'])
    for root in (sqlfiles, login):
        assert tool_runs(root) == [] and migrate_entries(root, 'mig-x') == []


# -- Firebird on a Windows host: gbak.exe from bin_dir, run on the host --------------------------------------------------

FB_ROWS = 60


def fb_rows(server, name):
    conn = server.connect(name)
    try:
        cur = conn.cursor()
        cur.execute('SELECT count(*), coalesce(sum(id), 0) FROM patients')
        return tuple(cur.fetchone())
    finally:
        conn.close()


def fb_change(server, name, sql):
    conn = server.connect(name)
    try:
        conn.cursor().execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_a_firebird_backup_with_gbak_exe_and_its_restore_run_on_the_windows_host(firebird_server, tmp_path):
    """KSAMU's backup (engine firebird, verify quick) on a Windows host: gbak.exe from bin_dir run there writes the backup
    file, hashed on the host; the manifest is the one the POSIX path writes for the same database (same fields and
    values, but the time-dependent ones); the rollback restores the database from it (rows read back). gbak.exe missing
    is refused before any step runs, a gbak that exits non-zero fails the backup step in words."""
    firebird_server.create_database('ksamu')
    fb_change(firebird_server, 'ksamu', 'CREATE TABLE patients (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(80))')
    conn = firebird_server.connect('ksamu')
    try:
        conn.cursor().executemany('INSERT INTO patients VALUES (?, ?)', [(i, 'patient %d' % i) for i in range(1, FB_ROWS + 1)])
        conn.commit()
    finally:
        conn.close()
    before = fb_rows(firebird_server, 'ksamu')
    bindir = tmp_path / 'Firebird_3_0'
    bindir.mkdir()
    os.symlink('/usr/bin/gbak', str(bindir / 'gbak.exe'))  # Firebird's gbak, under its Windows name
    env = {'ANSIBLE_COLLECTIONS_PATH': DOUBLES + os.pathsep + COLLECTIONS, 'ANSIBLE_PIPELINING': 'true'}

    def host_args(name, run_id, **backup):
        root = tmp_path / name
        (root / 'app').mkdir(parents=True, exist_ok=True)
        (root / 'app' / 'VERSION').write_text(OLD + '\n')
        journal_path = str(root / 'journal.jsonl')
        _journal.Journal(journal_path, NEW, run_id).record('begin', 'ok', data={'from_version': OLD})
        spec = dict(firebird_server.params('ksamu'), dest=str(root / 'backups'), label='pre-' + NEW, verify='quick')
        spec.update(backup)
        return dict(journal=journal_path, run_id=run_id, target=NEW, install_root=str(root / 'app'), steps=['backup'],
                    backup=dict((k, v) for k, v in spec.items() if v is not None))

    done = windows_play({'win': host_args('win', 'fb-1', bin_dir=str(bindir)), 'posix': host_args('posix', 'fb-1')},
                        tmp_path, 'fb-backup', env, posix=('posix',))
    for host, result in done.items():
        assert not result.get('failed'), (host, result.get('msg'))
        assert PASSWORD not in json.dumps(result)
    assert done['win']['host_os'] == 'windows'
    manifests = {}
    for host in ('win', 'posix'):
        dest = str(tmp_path / host / 'backups')
        names = sorted(os.listdir(dest))
        assert len(names) == 2 and names[1] == names[0] + '.manifest.json', names  # no password file, no temporary left
        with open(os.path.join(dest, names[1]), encoding='utf-8') as handle:
            manifests[host] = json.load(handle)
        with open(os.path.join(dest, names[0]), 'rb') as handle:
            data = handle.read()
        assert manifests[host]['sha256'] == hashlib.sha256(data).hexdigest() and manifests[host]['size'] == len(data)
        assert manifests[host]['verification']['ok'] and manifests[host]['verification']['level'] == 'quick'
        assert 'gbak restored the backup into a scratch database' in ' '.join(manifests[host]['verification']['checks'])
    timeless = ('file', 'created_at', 'created_ns', 'sha256', 'size', 'checksum_method', 'verification', 'tool_versions',
                'server_version', 'database_size')
    same = dict((k, v) for k, v in manifests['win'].items() if k not in timeless)
    assert same == dict((k, v) for k, v in manifests['posix'].items() if k not in timeless)
    assert same['engine'] == 'firebird' and same['format'] == 'gbak' and same['compression'] == 'none'
    assert manifests['win']['file'].split('_')[:3] == manifests['posix']['file'].split('_')[:3]
    assert set(manifests['win']) == set(manifests['posix'])
    assert not [n for n in os.listdir(firebird_server.data) if '.check.' in n or '.restoring.' in n]  # scratch dropped

    # the schema step changed the data and failed: the rollback restores the database with gbak.exe on the host
    fb_change(firebird_server, 'ksamu', 'DELETE FROM patients WHERE id > 10')
    assert fb_rows(firebird_server, 'ksamu') != before
    rolled = windows_play({'win': dict(host_args('win', 'fb-1', bin_dir=str(bindir)), op='rollback',
                                       failed_step='migrate_offline')}, tmp_path, 'fb-rollback', env)['win']
    assert not rolled.get('failed'), rolled.get('msg')
    assert 'the database was restored from' in rolled['restored'], rolled
    assert fb_rows(firebird_server, 'ksamu') == before
    assert not [n for n in os.listdir(firebird_server.data) if n.startswith('.')]

    # refusals: gbak.exe missing (before any step), a gbak that fails (the step, in words), compression
    empty = tmp_path / 'NoFirebird'
    empty.mkdir()
    refused = windows_play({
        'missing': host_args('missing', 'fb-2', bin_dir=str(empty)),
        'wrongpw': host_args('wrongpw', 'fb-2', bin_dir=str(bindir), login_password='not-the-password'),
        'gzip': host_args('gzip', 'fb-2', bin_dir=str(bindir), compression='gzip'),
    }, tmp_path, 'fb-refused', env)
    assert 'invalid input, nothing was stopped' in refused['missing']['msg']
    assert 'gbak.exe (needed to back up and restore Firebird) is not in bin_dir %s' % empty in refused['missing']['msg']
    assert refused['wrongpw']['failed_step'] == 'backup' and 'gbak backup of' in refused['wrongpw']['msg']
    assert 'not-the-password' not in json.dumps(refused['wrongpw'])
    assert not [n for n in os.listdir(str(tmp_path / 'wrongpw' / 'backups')) if n.startswith('.')]  # password file removed
    assert 'use compression none' in refused['gzip']['msg']
    for host in ('missing', 'gzip'):
        assert not os.path.exists(str(tmp_path / host / 'backups'))
