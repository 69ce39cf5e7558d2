# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filter profile_merge: a profile with the site's overrides, merged the way upgrade_profile checks it."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.clinops.upgrade.plugins.plugin_utils.profile import merge


def profile_merge(profile, overrides):
    problems = []
    merged = merge(profile, overrides or {}, '', problems)
    if problems:
        raise AnsibleFilterError('upgrade_profile_overrides: ' + '; '.join(problems))
    return merged


class FilterModule:
    """Filters of clinops.upgrade."""

    def filters(self):
        return {'profile_merge': profile_merge}
