# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run() the action plugins share (plugin_utils/dispatch.py): the module on POSIX, run_windows on Windows."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from ansible.errors import AnsibleActionFail
from ansible_collections.clinops.upgrade.plugins.action import upgrade_cutover, upgrade_host_state, upgrade_journal
from ansible_collections.clinops.upgrade.plugins.plugin_utils.dispatch import HostDispatchAction


class Probe(HostDispatchAction):
    MODULE = 'clinops.upgrade.probe'

    def run_windows(self, task_vars):
        return {'changed': False, 'seen_check_mode': self._task.check_mode, 'vars': sorted(task_vars)}


class AsyncProbe(Probe):
    SUPPORTS_ASYNC = True


def make(cls, task_vars, async_val=0, check_mode=False):
    task = MagicMock()
    task.args = {'a': 1}
    task.check_mode = check_mode
    task.async_val = async_val
    task.action = cls.MODULE
    connection = MagicMock()
    connection.transport = 'ssh'
    connection._shell.tmpdir = '/tmp/x'
    connection._shell.SHELL_FAMILY = 'sh'
    action = cls(task, connection, MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    action._execute_module = MagicMock(return_value={'changed': True, 'from': 'module'})
    action._remove_tmp_path = MagicMock()
    action._early_needs_tmp_path = MagicMock(return_value=False)
    return action, task_vars


def test_a_posix_host_runs_the_module_once_and_the_temporary_folder_is_removed():
    action, task_vars = make(Probe, {'ansible_facts': {'os_family': 'Debian'}})
    result = action.run(task_vars=task_vars)
    assert result['from'] == 'module' and 'host_os' not in result
    action._execute_module.assert_called_once_with(module_name='clinops.upgrade.probe', module_args={'a': 1},
                                                   task_vars=task_vars, wrap_async=False)
    action._remove_tmp_path.assert_called_once_with('/tmp/x')


def test_a_windows_host_is_served_from_the_controller_in_check_mode_too():
    action, task_vars = make(Probe, {'clinops_upgrade_host_os': 'windows'}, check_mode=True)
    result = action.run(task_vars=task_vars)
    assert result['host_os'] == 'windows' and result['seen_check_mode'] is True
    assert result['vars'] == ['clinops_upgrade_host_os']
    action._execute_module.assert_not_called()
    action._remove_tmp_path.assert_called_once_with('/tmp/x')


def test_async_is_the_module_s_on_posix_and_refused_on_windows():
    action, task_vars = make(AsyncProbe, {'clinops_upgrade_host_os': 'posix'}, async_val=60)
    action.run(task_vars=task_vars)
    assert action._execute_module.call_args.kwargs['wrap_async'] is True
    action._remove_tmp_path.assert_not_called()  # the async job removes its own
    action, task_vars = make(AsyncProbe, {'clinops_upgrade_host_os': 'windows'}, async_val=60)
    with pytest.raises(AnsibleActionFail, match='probe does not support async on Windows hosts'):
        action.run(task_vars=task_vars)
    action, task_vars = make(Probe, {'clinops_upgrade_host_os': 'posix'}, async_val=60)
    with pytest.raises(AnsibleActionFail, match=r'This action \(clinops\.upgrade\.probe\) does not support async\.'):
        action.run(task_vars=task_vars)


def test_a_wrong_override_is_refused_before_anything_runs():
    action, task_vars = make(Probe, {'clinops_upgrade_host_os': 'win'})
    with pytest.raises(AnsibleActionFail, match='must be windows or posix'):
        action.run(task_vars=task_vars)
    action._execute_module.assert_not_called()


@pytest.mark.parametrize('plugin, module, async_ok', [
    (upgrade_cutover, 'clinops.upgrade.upgrade_cutover', True),
    (upgrade_host_state, 'clinops.upgrade.upgrade_host_state', False),
    (upgrade_journal, 'clinops.upgrade.upgrade_journal', False),
])
def test_the_plugins_share_the_run(plugin, module, async_ok):
    assert issubclass(plugin.ActionModule, HostDispatchAction) and 'run' not in vars(plugin.ActionModule)
    assert plugin.ActionModule.MODULE == module and plugin.ActionModule.SUPPORTS_ASYNC is async_ok
