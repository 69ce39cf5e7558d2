# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run() shared by the action plugins that serve a Windows host from the controller.

Like ansible-core's ``service`` action plugin, an action plugin of the collection runs its module on a POSIX host
(one module execution, unchanged) and, on a Windows host (:func:`host_os.host_os`), runs the same Python here on the
controller with a :class:`~ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host.WindowsHost`, whose
operations are ansible.windows module calls. :class:`HostDispatchAction` is that run() once: a plugin names its
``MODULE``, says whether it takes ``async`` on POSIX (``SUPPORTS_ASYNC``) and writes :meth:`run_windows`.

Action plugins import it as ``from ansible_collections.clinops.upgrade.plugins.plugin_utils.dispatch import
HostDispatchAction`` (plugin_utils are plain Python on the controller, as ansible-core's action plugins import
``ansible.plugins.action``).
"""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.clinops.upgrade.plugins.plugin_utils.host_os import host_os


class HostDispatchAction(ActionBase):
    """The module on a POSIX host; :meth:`run_windows` on the controller for a Windows host (``host_os: windows`` in
    the result). Check mode is supported on both paths (the module's own on POSIX; ``self._task.check_mode`` is for
    run_windows to honour)."""

    MODULE = None  # the module's FQCN, run as it is on a POSIX host
    SUPPORTS_ASYNC = False  # async on POSIX (the module wrapped as ansible-core does); never on the Windows path

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        self._supports_async = self.SUPPORTS_ASYNC
        result = super().run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        wrap_async = bool(self.SUPPORTS_ASYNC and self._task.async_val)
        try:
            if host_os(task_vars, self._connection, self._templar) == 'posix':
                result.update(self._execute_module(module_name=self.MODULE, module_args=self._task.args, task_vars=task_vars,
                                                   wrap_async=wrap_async))
                return result
            if self._task.async_val:
                raise AnsibleActionFail('%s does not support async on Windows hosts' % self.MODULE.rsplit('.', 1)[-1])
            result.update(self.run_windows(task_vars))
            result['host_os'] = 'windows'
            return result
        finally:
            if not wrap_async:  # an async job removes its own temporary folder when it ends
                self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access

    def run_windows(self, task_vars):
        """The task on a Windows host, from the controller: the module's result (``failed``/``msg`` on failure)."""
        raise NotImplementedError
