# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of upgrade_profile: check a product profile on the controller; never contacts the host."""

from __future__ import annotations

import os
import re

import yaml

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.clinops.upgrade.plugins.plugin_utils.profile import (
    PROFILES_DIR,
    ProfileError,
    check_profile,
    load_schema,
    schema_keys,
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', default='pmod'),
    file=dict(type='str', default=''),
    overrides=dict(type='dict', default={}),
    accept_draft=dict(type='bool', default=False),
)
NAME_RE = re.compile(r'^[A-Za-z0-9_-]+$')


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super().run(tmp, task_vars)
        del tmp
        checked = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if checked.error_messages:
            raise AnsibleActionFail('invalid arguments: ' + '; '.join(checked.error_messages))
        args = checked.validated_parameters
        path = self._profile_path(args)
        try:
            with open(path, encoding='utf-8') as handle:
                raw = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as exc:
            raise AnsibleActionFail('the profile %s cannot be read: %s' % (path, exc)) from exc
        try:
            profile = check_profile(raw, load_schema(), accept_draft=args['accept_draft'], overrides=args['overrides'])
        except ProfileError as exc:
            name = raw.get('name', args['name']) if isinstance(raw, dict) else args['name']
            result.update(failed=True, problems=exc.problems, path=path,
                          msg='the profile %s (%s) has %d problem%s, nothing was touched: %s'
                          % (name, path, len(exc.problems), '' if len(exc.problems) == 1 else 's', '; '.join(exc.problems)))
            return result
        # Never the profile itself: overrides arrive templated and may carry secrets.
        result.update(changed=False, path=path, profile_name=profile['name'], profile_status=profile['status'],
                      product=profile['product'], schema_keys=len(schema_keys(load_schema())),
                      msg='the profile %s (%s) is valid' % (profile['name'], profile['status']))
        return result

    def _profile_path(self, args):
        if args['file']:
            if os.path.isabs(args['file']):
                return args['file']
            return self._find_needle('vars', args['file'])
        if not NAME_RE.match(args['name']):
            raise AnsibleActionFail('name %r is not a profile name (letters, digits, _ and -); give a file instead' % args['name'])
        path = os.path.join(PROFILES_DIR, args['name'] + '.yml')
        if not os.path.isfile(path):
            shipped = sorted(f[:-4] for f in os.listdir(PROFILES_DIR) if f.endswith('.yml'))
            raise AnsibleActionFail('no profile named %s in the collection (shipped: %s)' % (args['name'], ', '.join(shipped)))
        return path
