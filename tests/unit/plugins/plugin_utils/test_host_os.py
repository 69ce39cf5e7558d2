# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one OS decision shared by the action plugins: which hosts are Windows hosts, and that all plugins agree."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleActionFail
from ansible_collections.clinops.upgrade.plugins.action import prefs_migrate, service_stop_ordered, upgrade_cutover
from ansible_collections.clinops.upgrade.plugins.action import upgrade_host_state, upgrade_journal
from ansible_collections.clinops.upgrade.plugins.plugin_utils import dispatch
from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import host_os, is_windows


class Shell:
    def __init__(self, family, is_windows_flag=False):
        self.SHELL_FAMILY = family  # pylint: disable=invalid-name
        self._IS_WINDOWS = is_windows_flag  # pylint: disable=invalid-name


class Connection:
    def __init__(self, transport='ssh', family='sh', is_windows_flag=False):
        self.transport = transport
        self._shell = Shell(family, is_windows_flag)


class Templar:
    def __init__(self, answers):
        self.answers = answers

    def template(self, value):
        return self.answers.get(value, value)


CASES = [
    ({}, Connection(), 'posix'),
    ({}, None, 'posix'),
    ({}, Connection('local'), 'posix'),
    ({}, Connection('winrm', 'powershell'), 'windows'),
    ({}, Connection('ansible.builtin.psrp', 'powershell'), 'windows'),
    ({}, Connection('ssh', 'powershell'), 'windows'),
    ({}, Connection('ssh', 'sh', is_windows_flag=True), 'windows'),
    ({'ansible_shell_type': 'pwsh'}, Connection(), 'windows'),
    ({'ansible_os_family': 'Windows'}, Connection(), 'windows'),
    ({'ansible_facts': {'os_family': 'Windows'}}, None, 'windows'),
    ({'ansible_facts': {'os_family': 'Debian'}}, Connection('ssh', 'powershell'), 'posix'),
    ({'clinops_upgrade_host_os': 'WINDOWS'}, Connection('local'), 'windows'),
    ({'clinops_upgrade_host_os': 'posix', 'ansible_os_family': 'Windows'}, Connection('winrm', 'powershell'), 'posix'),
]


@pytest.mark.parametrize('task_vars, connection, expected', CASES)
def test_the_host_decides(task_vars, connection, expected):
    assert host_os(task_vars, connection) == expected
    assert is_windows(task_vars, connection) is (expected == 'windows')


@pytest.mark.parametrize('task_vars, connection, expected', CASES)
def test_every_action_plugin_asks_the_same_helper(task_vars, connection, expected):
    # no plugin keeps its own copy of the decision: the names they call are this module's functions (three plugins
    # through the run() they share, plugin_utils/dispatch.py)
    assert dispatch.host_os is host_os
    for plugin in (upgrade_cutover, upgrade_host_state, upgrade_journal):
        assert issubclass(plugin.ActionModule, dispatch.HostDispatchAction) and 'run' not in vars(plugin.ActionModule)
    assert prefs_migrate.is_windows is is_windows
    assert service_stop_ordered.is_windows is is_windows
    assert prefs_migrate.is_windows(task_vars, connection) is (expected == 'windows')


def test_a_templated_override_is_templated():
    templar = Templar({'{{ site_os }}': 'windows'})
    assert host_os({'clinops_upgrade_host_os': '{{ site_os }}'}, Connection(), templar) == 'windows'


@pytest.mark.parametrize('value', ['win', 'linux', 'Windows 11'])
def test_a_wrong_override_is_refused(value):
    with pytest.raises(AnsibleActionFail, match='clinops_upgrade_host_os must be windows or posix'):
        host_os({'clinops_upgrade_host_os': value}, Connection())
