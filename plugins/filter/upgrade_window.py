# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters upgrade_window (may a run go ahead now, and when next) and upgrade_schedule (the timer, cron and AWX
forms of the schedule); the logic is plugins/module_utils/window.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.clinops.upgrade.plugins.plugin_utils.plain import plain
from ansible_collections.clinops.upgrade.plugins.module_utils.window import (
    WindowError, judge, schedule_forms, schedule_spec, window_spec)


def upgrade_window(spec, now=None, timezone=None, run_now=False, profile=None):
    try:
        return judge(window_spec(plain(profile), plain(spec)), now=plain(now) or None, timezone=plain(timezone) or None,
                     run_now=bool(run_now))
    except WindowError as exc:
        raise AnsibleFilterError(to_native(exc)) from None


def upgrade_schedule(spec, timezone=None, now=None, profile=None):
    try:
        return schedule_forms(schedule_spec(plain(profile), plain(spec)), timezone=plain(timezone) or None,
                              now=plain(now) or None)
    except WindowError as exc:
        raise AnsibleFilterError(to_native(exc)) from None


class FilterModule:
    """The window and schedule filters of clinops.upgrade."""

    def filters(self):
        return {'upgrade_window': upgrade_window, 'upgrade_schedule': upgrade_schedule}
