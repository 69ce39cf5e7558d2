# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefs_migrate item patterns (``*``, ``**``, ``?``, ``[...]``): checks, matching and the choice of files and formats."""

from __future__ import annotations

import posixpath
import re

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import FORMATS, FORMAT_BY_EXTENSION, PrefsError


# --------------------------------------------------------------------------------------------------
# paths and item patterns

def check_item_path(pattern):
    """Return the normalised relative pattern (``/`` separated) or raise PrefsError."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PrefsError('an item path is empty')
    if '\x00' in pattern:
        raise PrefsError('item path %r contains a NUL byte' % pattern)
    if pattern.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', pattern):
        raise PrefsError('item path %r is absolute; item paths are relative to src and dest' % pattern)
    parts = [p for p in pattern.split('/') if p not in ('', '.')]
    if any(p == '..' for p in parts):
        raise PrefsError('item path %r leaves its root (..)' % pattern)
    if not parts:
        raise PrefsError('item path %r names the root itself; name the files or folders to carry' % pattern)
    return '/'.join(parts)


def is_inside(path, root):
    """True when the absolute ``path`` is ``root`` or below it (both normalised the same way)."""
    root = root.rstrip('/\\')
    if path.rstrip('/\\') == root:
        return True
    return path.startswith(root + '/') or path.startswith(root + '\\')


def has_magic(segment):
    return any(c in segment for c in '*?[')


def literal_prefix(pattern):
    """The leading segments of a pattern without wildcards: ``a/b/*.x`` -> ``a/b``."""
    prefix = []
    for part in pattern.split('/'):
        if has_magic(part):
            break
        prefix.append(part)
    return '/'.join(prefix)


def _segment_regex(segment):
    out = []
    i = 0
    n = len(segment)
    while i < n:
        c = segment[i]
        if c == '*':
            out.append('[^/]*')
        elif c == '?':
            out.append('[^/]')
        elif c == '[':
            j = i + 1
            if j < n and segment[j] == '!':
                j += 1
            if j < n and segment[j] == ']':
                j += 1
            j = segment.find(']', j)
            if j < 0:
                out.append('\\[')
            else:
                body = segment[i + 1:j]
                negate = body.startswith('!')
                if negate:
                    body = body[1:]
                body = body.replace('\\', '\\\\')
                out.append('[%s%s]' % ('^/' if negate else '', body))
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return ''.join(out)


def pattern_regex(pattern):
    """A compiled regex for relative ``/`` paths: ``*``, ``?``, ``[...]`` stay in a segment, ``**`` spans segments."""
    segments = pattern.split('/')
    regex = ''
    need_sep = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == '**':
            if last:
                regex += '(?:/[^/]+)*' if regex else '(?:[^/]+(?:/[^/]+)*)?'
            else:
                regex += ('/' if need_sep else '') + '(?:[^/]+/)*'
                need_sep = False
            continue
        regex += ('/' if need_sep else '') + _segment_regex(segment)
        need_sep = True
    return re.compile('^' + regex + '$', re.DOTALL)


def item_matches(regex, rel):
    """True when ``rel`` or one of its parent folders matches (a matched folder carries its whole tree)."""
    parts = rel.split('/')
    for i in range(len(parts), 0, -1):
        if regex.match('/'.join(parts[:i])):
            return True
    return False


def select_files(items, src_files, dest_files):
    """Decide which item handles each file.

    ``src_files`` and ``dest_files``: iterables of relative ``/`` paths of regular files.  The last item
    whose pattern matches a file handles it.  Returns ``(selection, missing)``: ``selection`` maps a
    relative path to its item (dict, in file order), ``missing`` lists the item paths that matched nothing.
    """
    src_files = sorted(src_files)
    dest_set = set(dest_files)
    selection = {}
    missing = []
    for item in items:
        regex = pattern_regex(item['path'])
        pool = src_files
        if item['mode'] == 'keep':
            pool = sorted(set(src_files) | dest_set)
        hits = [rel for rel in pool if item_matches(regex, rel)]
        if not hits:
            missing.append(item['path'])
        for rel in hits:
            selection[rel] = item
    return dict(sorted(selection.items())), missing


def resolve_format(item_format, rel):
    if item_format and item_format != 'auto':
        if item_format not in FORMATS:
            raise PrefsError('unknown format %r for %s (use one of %s)' % (item_format, rel, ', '.join(FORMATS)))
        return item_format
    ext = posixpath.splitext(rel.lower())[1]
    fmt = FORMAT_BY_EXTENSION.get(ext)
    if fmt is None:
        raise PrefsError('cannot tell the format of %s from its extension %r; give the item a format '
                         '(%s) or use mode copy' % (rel, ext, ', '.join(FORMATS)))
    return fmt
