"""SQL Server and command-engine options as db_backup and service_stop_ordered check them, before anything runs."""
from __future__ import annotations

import pytest

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.clinops.upgrade.plugins.module_utils.backup import module as backup_module
from ansible_collections.clinops.upgrade.plugins.module_utils.backup.common import BackupError
from ansible_collections.clinops.upgrade.plugins.module_utils.service import spec as service_spec


def backup_params(**params):
    result = ArgumentSpecValidator(backup_module.module_kwargs()['argument_spec']).validate(params)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.mark.parametrize('params, words', [
    (dict(engine='mssql', database='IS', dest='/b', login_instance='SQLEXPRESS', login_port=1433), 'both set'),
    (dict(engine='mssql', database='IS', dest='/b', login_password='x'), 'without login_user'),
    (dict(engine='mssql', database='IS\nGO', dest='/b'), 'control character'),
    (dict(engine='postgresql', database='pmod', dest='/b', login_instance='SQLEXPRESS'), 'applies to engine mssql only'),
    (dict(engine='files', path='/srv/x', dest='/b', command=dict(argv=['x'], output='/srv/out/*.bak')), 'engine command only'),
    (dict(engine='command', dest='/b', command=dict(argv=['x'])), 'needs command.output'),
    (dict(engine='command', dest='/b'), 'needs command.argv'),
])
def test_db_backup_refuses_before_anything_runs(params, words):
    with pytest.raises(BackupError, match=words):
        backup_module.validate_options(backup_params(**params))


def test_db_backup_engine_command_gets_tar_and_accepts_good_options():
    settings = backup_module.validate_options(backup_params(engine='command', dest='/b', command=dict(
        argv=['/opt/ca/bin/ca-admin', 'backup'], output='/srv/ca/Backup/*.cab')))
    assert settings['format'] == 'tar' and settings['compression'] == 'none'
    assert backup_module.module_kwargs()['argument_spec']['engine']['choices'][-1] == 'command'
    assert backup_module.module_kwargs()['argument_spec']['login_password']['no_log'] is True


def service_errors(connection):
    params = dict(services=[dict(name='a', backend='script', stop_command='true', start_command='true', pattern='no-such-x')],
                  state='stopped',
                  drain=dict(query='SELECT COUNT(*) FROM dbo.WorkQueue', connection=connection))
    result = ArgumentSpecValidator(service_spec.argument_spec()).validate(params)
    assert not result.error_messages, result.error_messages
    return service_spec.check_params(result.validated_parameters)


def test_drain_query_on_mssql_is_checked_like_the_backup():
    errors = service_errors(dict(engine='mssql', database='IS', login_instance='SQLEXPRESS', login_port=1433))
    assert errors == ['drain.connection: login_instance and login_port are both set: sqlcmd would ignore the instance; give one']
    assert service_errors(dict(engine='mssql', database='IS', login_instance='SQLEXPRESS')) == []
    assert service_errors(dict(engine='postgresql', database='IS', login_instance='SQLEXPRESS')) == [
        'drain.connection: login_instance applies to engine mssql only']
    assert service_errors(dict(engine='mssql', database='IS', login_password='x')) == [
        'drain.connection: login_password is set without login_user: SQL Server authentication needs both; leave both unset'
        ' for Windows authentication (the account the task runs as)']
