# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which hosts the upgrade_cutover action plugin serves from the controller (Windows) and which run the module."""

from __future__ import annotations

import pytest

from ansible.errors import AnsibleActionFail
from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import host_os


class Shell:
    def __init__(self, family):
        self.SHELL_FAMILY = family  # pylint: disable=invalid-name


class Connection:
    def __init__(self, transport='ssh', family='sh'):
        self.transport = transport
        self._shell = Shell(family)


@pytest.mark.parametrize('task_vars, connection, expected', [
    ({}, Connection(), 'posix'),
    ({}, Connection('local'), 'posix'),
    ({}, Connection('winrm', 'powershell'), 'windows'),
    ({}, Connection('psrp', 'powershell'), 'windows'),
    ({}, Connection('ssh', 'powershell'), 'windows'),
    ({'ansible_shell_type': 'powershell'}, Connection(), 'windows'),
    ({'ansible_os_family': 'Windows'}, Connection(), 'windows'),
    ({'ansible_facts': {'os_family': 'Windows'}}, Connection(), 'windows'),
    ({'clinops_upgrade_host_os': 'windows'}, Connection('local'), 'windows'),
    ({'clinops_upgrade_host_os': 'Windows'}, Connection('local'), 'windows'),
    ({'clinops_upgrade_host_os': 'posix'}, Connection('winrm', 'powershell'), 'posix'),
])
def test_the_host_decides_the_path(task_vars, connection, expected):
    assert host_os(task_vars, connection) == expected


def test_a_wrong_override_is_refused():
    with pytest.raises(AnsibleActionFail, match='windows or posix'):
        host_os({'clinops_upgrade_host_os': 'win'}, Connection())
