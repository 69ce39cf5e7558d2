# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test upgrade_window_open: whether a window allows a run now; the logic is plugins/module_utils/window.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.clinops.upgrade.plugins.filter.upgrade_window import upgrade_window


def upgrade_window_open(spec, now=None, timezone=None, profile=None):
    verdict = upgrade_window(spec, now=now, timezone=timezone, profile=profile)
    if not isinstance(verdict, dict):  # pragma: no cover - the filter always answers a dict
        raise AnsibleFilterError('upgrade_window_open: no verdict')
    return verdict['allowed']


class TestModule:
    """The window test of clinops.upgrade."""

    def tests(self):
        return {'upgrade_window_open': upgrade_window_open}
