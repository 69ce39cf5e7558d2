# -*- coding: utf-8 -*-
# Copyright: contributors to clinops.upgrade
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Product profiles on the controller: merge the site's overrides, validate against profiles/schema.json.

Pure functions: no Ansible objects, no I/O except reading the schema file.  The action plugin
``clinops.upgrade.upgrade_profile`` and the filter ``clinops.upgrade.profile_merge`` call them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import json
import os
import traceback

try:
    import jsonschema
    HAS_JSONSCHEMA = True
    JSONSCHEMA_IMPORT_ERROR = None
except ImportError:
    HAS_JSONSCHEMA = False
    JSONSCHEMA_IMPORT_ERROR = traceback.format_exc()

# plugins/plugin_utils/profile.py -> <collection>/profiles
PROFILES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'profiles')
SCHEMA_PATH = os.path.join(PROFILES_DIR, 'schema.json')

# Items of a list are "named things" when every item is a dict carrying one of these keys (tried in this order).
IDENTITY_KEYS = ('name', 'path', 'dest')
# An override item {<identity>: x, state: absent} removes the entry x.
REMOVE_KEY = 'state'
REMOVE_VALUE = 'absent'
INFORMATIONAL = 'x-informational'


class ProfileError(Exception):
    """A profile that cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems):
        super(ProfileError, self).__init__('; '.join(problems))
        self.problems = list(problems)


def load_schema(path=SCHEMA_PATH):
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


# --------------------------------------------------------------------------------------------------
# merging overrides

def _copy(value):
    """A copy of nested dicts and lists (iterated, so that Ansible's lazy containers give their rendered values)."""
    if isinstance(value, dict):
        return dict((k, _copy(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _identity(items):
    """The key that names every item of ``items`` (a list of dicts), or None."""
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    for key in IDENTITY_KEYS:
        if all(key in item for item in items):
            return key
    return None


def _merge_list(base, override, where, problems):
    key = _identity(base)
    if key is None or not override or not all(isinstance(item, dict) and key in item for item in override):
        return _copy(override)
    merged = [_copy(item) for item in base]
    for index, item in enumerate(override):
        ident = item[key]
        position = next((i for i, old in enumerate(merged) if old.get(key) == ident), None)
        if item.get(REMOVE_KEY) == REMOVE_VALUE:
            if position is None:
                problems.append('%s[%d]: %s %r is removed but the profile has no such entry' % (where, index, key, ident))
            else:
                del merged[position]
            continue
        if position is None:
            merged.append(_copy(item))
        else:
            merged[position] = merge(merged[position], item, '%s[%d]' % (where, position), problems)
    return merged


def merge(base, override, where='', problems=None):
    """``override`` over ``base``: dicts deep-merged, lists of named things merged by name, anything else replaced.

    A list whose items are all dicts with ``name`` (services, checks), ``path`` (preference items) or ``dest``
    (start scripts) is merged entry by entry: an override entry with a known name is merged into it, a new name is
    appended, and ``{name: x, state: absent}`` removes ``x``.  An empty list, a list of other items, and other lists
    (argv, restart_after_verify) replace the list.
    ``problems`` collects removals of entries that do not exist.
    """
    if problems is None:
        problems = []
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict((k, _copy(v)) for k, v in base.items())
        for key, value in override.items():
            path = '%s.%s' % (where, key) if where else str(key)
            merged[key] = merge(base[key], value, path, problems) if key in base else _copy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return _merge_list(base, override, where, problems)
    return _copy(override)


# --------------------------------------------------------------------------------------------------
# validation

def format_path(parts):
    """['services', 2, 'backend'] -> 'services[2].backend'."""
    text = ''
    for part in parts:
        if isinstance(part, int):
            text += '[%d]' % part
        else:
            text += ('.' if text else '') + str(part)
    return text or '(top level)'


def did_you_mean(word, candidates):
    """The closest of ``candidates`` to ``word``, or None."""
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def is_templated(value):
    return isinstance(value, str) and ('{{' in value or '{%' in value)


def _type_name(value):
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, (list, tuple)):
        return 'list'
    if isinstance(value, dict):
        return 'mapping'
    if value is None:
        return 'null (empty)'
    return type(value).__name__


def _expected(types):
    if isinstance(types, list):
        return ' or '.join(_expected(t) for t in types)
    return {'object': 'mapping', 'array': 'list'}.get(types, types)


def _messages(error):
    """Messages for one jsonschema error, each 'path: what is wrong'.  Values are shown only for enums and patterns."""
    path = list(error.absolute_path)
    where = format_path(path)
    kind = error.validator
    if kind != 'required' and kind != 'additionalProperties' and is_templated(error.instance):
        return []  # a template is checked after templating, by the module that receives the value
    if kind == 'additionalProperties':
        known = list(error.schema.get('properties', {}))
        out = []
        for key in sorted(set(error.instance) - set(known), key=str):
            hint = did_you_mean(str(key), known)
            out.append('%s: unknown key%s' % (format_path(path + [key]), '; did you mean %s?' % hint if hint else ''))
        return out
    if kind == 'required':
        return ['%s: missing (required)' % format_path(path + [key])
                for key in error.validator_value if isinstance(error.instance, dict) and key not in error.instance]
    if kind == 'enum':
        return ['%s: %r is not one of %s' % (where, error.instance, ', '.join(str(v) for v in error.validator_value))]
    if kind == 'type':
        return ['%s: expected %s, got %s' % (where, _expected(error.validator_value), _type_name(error.instance))]
    if kind == 'pattern':
        return ['%s: %r does not match %s' % (where, error.instance, error.validator_value)]
    if kind in ('minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'):
        words = {'minimum': 'less than the minimum', 'maximum': 'more than the maximum',
                 'exclusiveMinimum': 'not more than', 'exclusiveMaximum': 'not less than'}[kind]
        return ['%s: %s is %s %s' % (where, error.instance, words, error.validator_value)]
    if kind == 'minItems':
        return ['%s: needs at least %d entr%s' % (where, error.validator_value, 'y' if error.validator_value == 1 else 'ies')]
    return ['%s: %s' % (where, error.message)]


def validate(profile, schema):
    """Every problem of ``profile`` against ``schema``, as sorted 'path: message' strings (empty when valid)."""
    if not HAS_JSONSCHEMA:
        raise ProfileError(['the Python library jsonschema is needed on the controller to check profiles: %s'
                            % JSONSCHEMA_IMPORT_ERROR.strip().splitlines()[-1]])
    if not isinstance(profile, dict):
        return ['(top level): expected mapping, got %s' % _type_name(profile)]
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in validator.iter_errors(profile):
        problems.extend(_messages(error))
    # unique, sorted by path
    return sorted(set(problems), key=lambda m: (m.split(':', 1)[0], m))


def check_profile(profile, schema, accept_draft=False, overrides=None):
    """Merge ``overrides``, validate, refuse a draft; return the merged profile or raise ProfileError."""
    problems = []
    merged = merge(profile, overrides or {}, '', problems) if overrides else profile
    problems = ['upgrade_profile_overrides.' + p for p in problems]
    problems.extend(validate(merged, schema))
    if isinstance(merged, dict) and merged.get('status') == 'draft' and not accept_draft:
        problems.append("status: the profile %s is a draft (not tested end to end); set upgrade_profile_accept_draft: true "
                        "to run it anyway" % merged.get('name', '?'))
    if problems:
        raise ProfileError(problems)
    return merged


# --------------------------------------------------------------------------------------------------
# the schema's keys

def schema_keys(schema, prefix=''):
    """Every key the schema defines, as (dotted path, its schema) pairs; list items are written ``key[]``."""
    found = []
    for key, sub in schema.get('properties', {}).items():
        path = prefix + key
        found.append((path, sub))
        if sub.get('type') == 'object':
            found.extend(schema_keys(sub, path + '.'))
        elif sub.get('type') == 'array' and isinstance(sub.get('items'), dict) and sub['items'].get('type') == 'object':
            found.extend(schema_keys(sub['items'], path + '[].'))
    return found
