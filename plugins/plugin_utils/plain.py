# -*- coding: utf-8 -*-
# Copyright: contributors to clinops.upgrade
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values that reach a filter plugin as Ansible's lazy mappings and tagged strings, turned into plain Python values
(dict, list, str), so that the collection's pure functions compare and serialise them as they would any value.

The filters ``clinops.upgrade.upgrade_window``, ``upgrade_schedule``, ``dicom_nodes`` and ``dicom_answers`` use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_native


def plain(value):
    """``value`` with every mapping a dict (keys native strings), every list or tuple a list, every string a str."""
    if isinstance(value, dict) or hasattr(value, 'items'):
        return dict((to_native(key), plain(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value
