"""Every task of the project against the documented options of the module it calls (see contracts.py).

The modules of other collections (ansible.windows, community.general, awx.awx, ...) cannot all run here (no
Windows host, no AWX server): their documentation, read from the pinned ``ansible`` package at test time, is the
contract our calls must keep. A renamed, misspelled or removed option fails here.
"""
import pytest

import contracts


def test_every_task_keeps_its_modules_contract():
    tasks = contracts.project_tasks()
    problems, docs = contracts.check(tasks)
    assert not problems, '\n'.join(problems)
    # the walk really found the project's tasks and the modules of other collections they call
    assert len(tasks) > 100
    assert {'clinops.upgrade.upgrade_cutover', 'clinops.upgrade.upgrade_journal', 'community.general.mail'} <= set(docs)


BROKEN = [
    ({'name': 'x', 'ansible.windows.win_service': {'name': 'svc', 'state': 'stoped'}},
     "state='stoped' is not one of ['absent', 'paused', 'started', 'stopped', 'restarted']"),
    ({'name': 'x', 'ansible.windows.win_service': {'name': 'svc', 'force_dependent_service': True}},
     "'force_dependent_service' is not an option of this module"),
    ({'name': 'x', 'ansible.windows.win_copy': {'src': 'a'}},
     "the required option 'dest' is missing"),
    ({'name': 'x', 'clinops.upgrade.db_backup': {'engine': 'sqlite', 'path': '/x', 'dest': '/b', 'verify': 'full'}},
     "verify='full' is not one of"),
    ({'name': 'x', 'awx.awx.job_template': {'name': 'j', 'job_slice_count': 'two'}},
     "job_slice_count='two' is not of type int"),
    ({'name': 'x', 'win_service': {'name': 'svc'}},
     "'win_service' is not a fully qualified module name"),
    ({'name': 'x', 'ansible.windows.win_nosuchmodule': {'name': 'svc'}},
     'ansible.windows.win_nosuchmodule is not a module of the installed collections'),
]


@pytest.mark.parametrize('task,message', BROKEN, ids=[str(i) for i in range(len(BROKEN))])
def test_a_broken_call_is_caught(task, message):
    problems, dummy = contracts.check([('case', task)])
    assert problems and message in problems[0], problems


def test_templated_values_are_checked_by_name_only():
    task = {'name': 'x', 'ansible.windows.win_service': {'name': '{{ svc }}', 'state': '{{ wanted }}'}}
    assert contracts.check([('case', task)])[0] == []
    task = {'name': 'x', 'ansible.windows.win_service': {'name': '{{ svc }}', 'stat': '{{ wanted }}'}}
    assert "'stat' is not an option" in contracts.check([('case', task)])[0][0]


# ---------------------------------------------------------------- the Windows host of the upgrade engine

class RecordingWindows:
    """Answers every ansible.windows call of WindowsHost like a Windows host would (one running service, one file),
    and records the calls: what the contract is checked against."""

    def __init__(self):
        self.calls = []
        self.state = 'running'

    def _execute_module(self, module_name, module_args, task_vars):
        import base64  # pylint: disable=import-outside-toplevel
        del task_vars
        self.calls.append((module_name, dict(module_args)))
        name = module_name.rsplit('.', 1)[1]
        if name == 'win_stat' and module_args.get('get_checksum'):
            return {'stat': {'exists': True, 'isdir': False, 'islnk': False, 'size': 3, 'checksum': 'ab' * 32}}
        if name == 'win_stat':
            return {'stat': {'exists': True, 'isdir': True, 'islnk': False}}
        if name == 'win_find':
            return {'files': [{'filename': 'app_old0001'}]}
        if name == 'slurp':
            return {'content': base64.b64encode(b'{"run_id": "r1"}\n').decode()}
        if name == 'win_service_info':
            return {'services': [{'name': module_args['name'], 'state': self.state, 'process_id': 42}]}
        if name == 'win_command':
            self.state = 'stopped'
            return {'rc': 0, 'stdout': ''}
        if name == 'win_service':
            self.state = 'running'
            return {'changed': True}
        if name == 'win_powershell':
            script = module_args['script'].split('\n', 1)[0].rsplit(' ', 1)[1]
            answers = {'zip_list': {'names': ['app/', 'app/VERSION']}, 'rename': {'renamed': True},
                       'run': {'timed_out': False, 'rc': 0, 'stdout': 'OK'}, 'free_space': {'free': 10 ** 9},
                       'clock': {'utc': 'x', 'epoch': 1.0, 'timezone': 'UTC'}}
            return {'output': [answers.get(script, {})], 'error': []}
        return {'changed': True}


def test_every_call_of_the_windows_host_keeps_its_modules_contract():
    from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import SCRIPTS, WindowsHost  # pylint: disable=import-outside-toplevel
    fake = RecordingWindows()
    host = WindowsHost(fake, {})
    for ask in (host.exists, host.isdir, host.isfile, host.islink, host.readlink, host.realpath, host.listdir,
                host.read_text, host.makedirs, host.remove_tree, host.free_space):
        ask('C:/PMOD/app')
    host.write_atomic('C:/PMOD/app/Config.properties', b'a=1\r\n')
    host.rename('C:/PMOD/app', 'C:/PMOD/app_old0001')
    host.copy_tree('C:/PMOD/app', 'C:/PMOD/copy')
    host.unpack('C:/rel/app.zip', 'C:/staging')
    host.run(['pmodctl.exe', 'echo-ts'], cwd='C:/PMOD/app', timeout=5)
    host.clock()
    services = [{'name': 'PMOD-TS', 'port': 7000, 'host': '127.0.0.1', 'timeout': 5, 'kill_after': True}]
    host.services('stopped', services)
    host.services('started', services)
    journal = host.journal('C:/PMOD/state/journal.jsonl', '2.0', 'r1')
    journal.record('begin', 'ok')
    journal.release_lock()
    # a db_backup run on the host (engine mssql): its files and sqlcmd through the host, the backup hashed by win_stat
    from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import WindowsBackupIO  # pylint: disable=import-outside-toplevel
    backup_io = WindowsBackupIO(host)
    for ask in (backup_io.exists, backup_io.isdir, backup_io.listdir, backup_io.read_text, backup_io.mkdir, backup_io.remove,
                backup_io.writable, backup_io.free_space, backup_io.hash_file, backup_io.size):
        ask('C:/Backups/PMOD/pmod.bak')
    backup_io.write_new('C:/Backups/PMOD/.pmod.bak.manifest.tmp', '{}')
    backup_io.rename('C:/Backups/PMOD/.pmod.bak.tmp', 'C:/Backups/PMOD/pmod.bak')
    backup_io.run(['C:/Program Files/Microsoft SQL Server/Client SDK/ODBC/170/Tools/Binn/sqlcmd', '-E', '-Q', 'SELECT 1'])
    # schema_update's command mode on the host (the migrate steps): the vendor's tool without a limit of our own
    from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import _SchemaParent  # pylint: disable=import-outside-toplevel
    _SchemaParent(host).host_run(['C:/ConAktiv Server/ca_admin.exe', 'structure-update'], 0)
    assert ('ansible.windows.win_stat', {'path': 'C:\\Backups\\PMOD\\pmod.bak', 'follow': False, 'get_checksum': True,
                                         'checksum_algorithm': 'sha256'}) in fake.calls
    problems, docs = contracts.call_problems(fake.calls)
    assert not problems, '\n'.join(problems)
    used = set(m for m, dummy in fake.calls)
    assert used == {'ansible.windows.win_stat', 'ansible.windows.win_find', 'ansible.windows.slurp', 'ansible.windows.win_file',
                    'ansible.windows.win_powershell', 'ansible.windows.win_service_info', 'ansible.windows.win_command',
                    'ansible.windows.win_service', 'ansible.windows.win_wait_for'} <= set(docs)
    scripts = set(a['script'] for m, a in fake.calls if m.endswith('win_powershell'))
    assert scripts == set(SCRIPTS.values())  # every script was exercised (and so checked)


@pytest.mark.parametrize('call, message', [
    (('ansible.windows.win_stat', {'path': 'C:/x', 'follow_links': False}), "'follow_links' is not an option"),
    (('ansible.windows.win_stat', {'path': 'C:/x', 'get_checksum': True, 'checksum_algorithm': 'sha3'}),
     "checksum_algorithm='sha3' is not one of"),
    (('ansible.windows.win_find', {'paths': ['C:/x'], 'file_type': 'anything'}), "file_type='anything' is not one of"),
    (('ansible.windows.win_copy', {'src': 'a', 'dest': 'b', '_copy_mode': 'single', '_no_such_thing': 1}), "'_no_such_thing'"),
])
def test_a_broken_windows_host_call_is_caught(call, message):
    problems, dummy = contracts.call_problems([call])
    assert any(message in p for p in problems), problems
