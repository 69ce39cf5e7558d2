# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three-way merge of prefs_migrate (old site file, new release file, optional old defaults), one format at a time."""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import FORMATS, PrefsError
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.ini import IniDoc
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.jsonfile import JsonDoc
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.properties import PropertiesDoc
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.xmlfile import XmlDoc


DOC_CLASSES = dict(properties=PropertiesDoc, ini=IniDoc, json=JsonDoc, xml=XmlDoc)


def parse(fmt, data, name):
    if fmt not in DOC_CLASSES:
        raise PrefsError('unknown format %r for %s (use one of %s)' % (fmt, name, ', '.join(FORMATS)))
    return DOC_CLASSES[fmt](data, name)


# --------------------------------------------------------------------------------------------------
# the three-way merge

def merge(fmt, old_data, new_data, defaults_data=None, name='file'):
    """Merge the site's old file into the new release's file.

    A key whose old value differs from the old release's default (``defaults_data``; without it every old
    value counts as changed) is customised and its old value is taken.  Keys the new release added keep
    their new defaults.  A key the old file has and the new one lacks is reported dropped, unless the
    defaults show the site added it (then it is carried over).

    Returns ``(result_bytes, report)``; ``report`` has ``keys`` (taken from old), ``added`` (new in this
    release), ``dropped`` and ``changed``.  Raises PrefsError for malformed input.
    """
    old = parse(fmt, old_data, name + ' (old)')
    new = parse(fmt, new_data, name + ' (new)')
    default = parse(fmt, defaults_data, name + ' (defaults)') if defaults_data is not None else None
    old_items = old.items()
    new_items = new.items()
    default_items = default.items() if default is not None else None
    taken = []
    dropped = []

    def differ(a, b):
        if fmt == 'json':
            return json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)
        return a != b

    for key, value in old_items.items():
        customised = default_items is None or key not in default_items or differ(default_items[key], value)
        raw = old.raw_value(key) if fmt == 'properties' else None
        if key in new_items:
            if customised:
                taken.append(key)
                if differ(new_items[key], value) and not new.set(key, value, raw=raw):
                    taken.pop()
                    dropped.append(key)
        elif default_items is not None and key not in default_items:
            if fmt == 'xml':
                done = new.add(key, value, source=old)
            elif fmt == 'ini':
                done = new.add(key, value, display=old.display(key))
            else:
                done = new.add(key, value, raw=raw)
            (taken if done else dropped).append(key)
        else:
            dropped.append(key)
    result = new.to_bytes()
    if result != new_data:
        parse(fmt, result, name + ' (merged)')  # never write what we could not read back

    def show(keys, doc):
        return [doc.display(k) if fmt == 'ini' else k for k in keys]
    report = dict(
        keys=show(taken, old),
        added=show([k for k in new_items if k not in old_items], new),
        dropped=show(dropped, old),
        changed=result != new_data,
    )
    return result, report


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def norm_rel(path):
    return path.replace(os.sep, '/')
