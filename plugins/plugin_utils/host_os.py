# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which kind of host a task runs on: the one decision every action plugin of the collection dispatches on.

Like ansible-core's ``service`` action plugin picks a module for the host's service manager, the collection's action
plugins (upgrade_cutover, service_stop_ordered, prefs_migrate, ...) run their Python module on a POSIX host and serve a
Windows host from the controller with the ansible.windows modules. They all ask :func:`is_windows` (or :func:`host_os`),
so a host is Windows for every plugin or for none. The order, first answer wins:

1. the variable ``clinops_upgrade_host_os`` (``windows`` or ``posix``, any case; anything else is refused) - the
   override, e.g. ``posix`` for a Windows host with Cygwin Python and an SSH shell;
2. the fact ``os_family`` (``ansible_facts.os_family`` or ``ansible_os_family``): ``Windows`` or not;
3. the connection plugin: ``winrm`` or ``psrp``;
4. the shell: ``ansible_shell_type`` ``powershell``/``pwsh``, or the connection's shell plugin of the PowerShell family
   (Windows over SSH).
Anything else is POSIX.
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

HOST_OS_VAR = 'clinops_upgrade_host_os'
HOST_OS_CHOICES = ('windows', 'posix')
WINDOWS_CONNECTIONS = ('winrm', 'psrp', 'ansible.builtin.winrm', 'ansible.builtin.psrp')
WINDOWS_SHELLS = ('powershell', 'pwsh', 'ansible.builtin.powershell')


def host_os(task_vars, connection=None, templar=None):
    """``'windows'`` or ``'posix'`` for the host of this task (see the module's docstring for the order).

    ``task_vars`` are the task's variables, ``connection`` the action plugin's ``self._connection`` (may be None),
    ``templar`` the action plugin's ``self._templar`` to template a templated override (may be None).
    Raises AnsibleActionFail for an override that is neither ``windows`` nor ``posix``.
    """
    task_vars = task_vars or {}
    wanted = task_vars.get(HOST_OS_VAR)
    if templar is not None and isinstance(wanted, str):
        wanted = templar.template(wanted)
    if wanted:
        wanted = str(wanted).strip().lower()
        if wanted not in HOST_OS_CHOICES:
            raise AnsibleActionFail('%s must be windows or posix, not %r' % (HOST_OS_VAR, wanted))
        return wanted
    facts = task_vars.get('ansible_facts') or {}
    family = facts.get('os_family') or task_vars.get('ansible_os_family')
    if family:
        return 'windows' if family == 'Windows' else 'posix'
    if getattr(connection, 'transport', None) in WINDOWS_CONNECTIONS:
        return 'windows'
    if task_vars.get('ansible_shell_type') in WINDOWS_SHELLS:
        return 'windows'
    shell = getattr(connection, '_shell', None)
    if getattr(shell, 'SHELL_FAMILY', None) == 'powershell' or getattr(shell, '_IS_WINDOWS', False) is True:
        return 'windows'
    return 'posix'


def is_windows(task_vars, connection=None, templar=None):
    """True when the task's host is a Windows host (:func:`host_os` says ``windows``)."""
    return host_os(task_vars, connection, templar) == 'windows'
