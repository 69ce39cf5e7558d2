# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Version numbers compared block by block, as numbers.

A version is a dotted list of non-negative integers: ``6.0.51.22965``.  Blocks are compared as numbers
(``6.0.10`` is newer than ``6.0.9``) and missing blocks count as zero (``6.0`` equals ``6.0.0``).
The first ``blocks`` blocks decide whether a change is major: KSAMU's four-block versions carry the
database scripts' version in their first three blocks, so ``6.0.51.1`` to ``6.0.52.0`` is major with
``blocks=3`` and ``6.0.51.1`` to ``6.0.51.2`` is minor.

    >>> parse('6.0.10') > parse('6.0.9')
    True
    >>> change_kind('6.0.51.22965', '6.0.51.22966', 3)
    'minor'

Used by the schema_update module and by the upgrade roles' preflight rules; pure Python, no Ansible.
"""

from __future__ import annotations

import re

__all__ = ['Version', 'VersionError', 'parse', 'compare', 'is_major_change', 'change_kind', 'major_part']

_VERSION_RE = re.compile(r'^[vV]?(\d+(?:[._]\d+)*)$')


class VersionError(ValueError):
    """A text that is not a version; the message quotes it."""


class Version(tuple):
    """An immutable tuple of int blocks that compares numerically, trailing zeros ignored.

    ``text`` is the dotted spelling of the blocks as given (``V6_0_10`` gives ``6.0.10``).
    """

    __slots__ = ()

    def __new__(cls, blocks):
        blocks = tuple(int(b) for b in blocks)
        if not blocks or any(b < 0 for b in blocks):
            raise VersionError('a version needs at least one non-negative block: %r' % (blocks,))
        return super().__new__(cls, blocks)

    @property
    def text(self):
        return '.'.join(str(b) for b in self)

    @property
    def key(self):
        """The blocks without trailing zeros: equal keys mean equal versions."""
        blocks = list(self)
        while len(blocks) > 1 and blocks[-1] == 0:
            blocks.pop()
        return tuple(blocks)

    def blocks(self, count):
        """The first ``count`` blocks, padded with zeros."""
        return tuple(self[:count]) + (0,) * max(0, count - len(self))

    def _cmp(self, other):
        if not isinstance(other, Version):
            other = parse(other)
        width = max(len(self), len(other))
        mine, theirs = self.blocks(width), other.blocks(width)
        return (mine > theirs) - (mine < theirs)

    def __eq__(self, other):
        try:
            return self._cmp(other) == 0
        except VersionError:
            return False

    def __ne__(self, other):
        return not self.__eq__(other)

    def __lt__(self, other):
        return self._cmp(other) < 0

    def __le__(self, other):
        return self._cmp(other) <= 0

    def __gt__(self, other):
        return self._cmp(other) > 0

    def __ge__(self, other):
        return self._cmp(other) >= 0

    def __hash__(self):
        return hash(self.key)

    def __str__(self):
        return self.text

    def __repr__(self):
        return 'Version(%r)' % self.text


def parse(value):
    """A :class:`Version` from ``'6.0.10'``, ``'V6_0_10'``, ``6``, a tuple of ints or a Version.

    Surrounding white space and one leading ``v`` are ignored; ``.`` and ``_`` both separate blocks.
    Anything else raises :class:`VersionError`.
    """
    if isinstance(value, Version):
        return value
    if isinstance(value, bool):
        raise VersionError('%r is not a version' % (value,))
    if isinstance(value, int):
        return Version((value,))
    if isinstance(value, (tuple, list)):
        if not value or not all(isinstance(b, int) and not isinstance(b, bool) for b in value):
            raise VersionError('%r is not a version' % (value,))
        return Version(value)
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'replace')
    text = str(value).strip() if value is not None else ''
    match = _VERSION_RE.match(text)
    if not match:
        raise VersionError('%r is not a version (expected numbers separated by dots, such as 6.0.10)' % (value,))
    return Version(re.split(r'[._]', match.group(1)))


def is_version(value):
    """True when :func:`parse` accepts ``value``."""
    try:
        parse(value)
    except VersionError:
        return False
    return True


def compare(left, right):
    """-1, 0 or 1 as ``left`` is older than, equal to or newer than ``right`` (texts or Versions)."""
    return parse(left)._cmp(parse(right))  # pylint: disable=protected-access


def major_part(version, blocks):
    """The first ``blocks`` blocks of ``version`` as a tuple (padded with zeros)."""
    if blocks < 1:
        raise VersionError('major blocks must be at least 1, not %r' % (blocks,))
    return parse(version).blocks(blocks)


def is_major_change(old, new, blocks=1):
    """True when the first ``blocks`` blocks differ; a change from nothing (``old`` None) is major."""
    if old is None:
        return new is not None
    if new is None:
        return True
    return major_part(old, blocks) != major_part(new, blocks)


def change_kind(old, new, blocks=1):
    """``'none'`` when the versions are equal, else ``'major'`` or ``'minor'`` by :func:`is_major_change`."""
    if old is None and new is None:
        return 'none'
    if old is not None and new is not None and compare(old, new) == 0:
        return 'none'
    return 'major' if is_major_change(old, new, blocks) else 'minor'
