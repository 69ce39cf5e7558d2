# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of upgrade_cutover: the module on a POSIX host, the same engine from the controller on Windows.

Like ansible-core's ``service`` action plugin picks the module for the host's service manager, this one looks at the
host (``plugin_utils/host_os.py``, shared by every action plugin of the collection). A POSIX host runs the module,
unchanged. A Windows host - the variable ``clinops_upgrade_host_os: windows``, the fact ``os_family`` ``Windows``,
connection ``winrm``/``psrp`` or a PowerShell shell - gets the same :class:`Cutover` (every step and the rollback, one
code path) run here on the controller with a :class:`WindowsHost`, which carries out each host operation with the
ansible.windows modules. The network checks (C-ECHO,
TCP) run from the controller; the command checks run on the host. ``clinops_upgrade_host_os: posix`` forces the module.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.clinops.upgrade.plugins.module_utils.cutover import (
    Cutover, StepFailed, check_problems, share_login_password, validate_steps)
from ansible_collections.clinops.upgrade.plugins.module_utils.cutover_spec import argument_spec
from ansible_collections.clinops.upgrade.plugins.plugin_utils.dispatch import HostDispatchAction
from ansible_collections.clinops.upgrade.plugins.plugin_utils.windows_host import WindowsHost, is_windows_abs

MODULE = 'clinops.upgrade.upgrade_cutover'
PATH_OPTIONS = ('journal', 'install_root', 'staged', 'artifact', 'staging_dir', 'old_artifact')


class Ended(BaseException):
    """exit_json/fail_json of the controller-side module: the engine is done (not an Exception the steps catch)."""

    def __init__(self, result):
        super().__init__(result.get('msg', ''))
        self.result = result


class ControllerModule:
    """What the engine needs of an AnsibleModule, when it runs on the controller for a Windows host."""

    def __init__(self, params, check_mode, no_log_values):
        self.params = params
        self.check_mode = check_mode
        self.no_log_values = set(no_log_values)
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def fail_json(self, msg, **kwargs):
        raise Ended(dict(kwargs, msg=msg, failed=True))

    def exit_json(self, **kwargs):
        raise Ended(kwargs)


class ActionModule(HostDispatchAction):

    TRANSFERS_FILES = True
    MODULE = MODULE
    SUPPORTS_ASYNC = True

    def run_windows(self, task_vars):
        """The module's input checks and the engine, with a WindowsHost; the result with every secret masked."""
        checked = ArgumentSpecValidator(argument_spec()).validate(dict(self._task.args))
        if checked.error_messages:
            return dict(failed=True, msg='invalid input, nothing was stopped: ' + '; '.join(checked.error_messages))
        params = checked.validated_parameters
        for key in PATH_OPTIONS:  # C:\\PMOD\\app -> C:/PMOD/app: the engine splits and joins paths with "/"
            if isinstance(params.get(key), str) and is_windows_abs(params[key]):
                params[key] = params[key].replace('\\', '/')
        module = ControllerModule(params, bool(self._task.check_mode),
                                  checked._no_log_values)  # pylint: disable=protected-access
        host = WindowsHost(self, task_vars)
        host.module = module
        outcome = dict(failed=True, msg='the engine ended without a result')
        try:
            share_login_password(module)
            errors = check_problems(module.params['checks'])
            try:
                errors.extend(validate_steps(module, host))
            except StepFailed as exc:
                errors.append(exc.msg)
            if errors:
                module.fail_json(msg='invalid input, nothing was stopped: ' + '; '.join(errors))
            engine = Cutover(module, host)
            if module.params['op'] == 'rollback':
                engine.rollback()
            engine.run()
            module.fail_json(msg='the engine ended without a result')
        except Ended as ended:
            outcome = ended.result
        except StepFailed as exc:  # a host operation failed outside a step (reading the journal)
            outcome = dict(failed=True, msg=exc.msg)
        outcome['host_os'] = 'windows'
        if module.warnings:
            outcome['warnings'] = list(module.warnings)
        return remove_values(outcome, module.no_log_values) if module.no_log_values else outcome
