# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.versions import (
    Version, VersionError, change_kind, compare, is_major_change, is_version, major_part, parse)


@pytest.mark.parametrize('text, blocks', [
    ('6.0.10', (6, 0, 10)),
    (' 6.0.51.22965\n', (6, 0, 51, 22965)),
    ('V6_0_10', (6, 0, 10)),
    ('v2', (2,)),
    ('1.2_3', (1, 2, 3)),
    (7, (7,)),
    ((1, 2), (1, 2)),
    (b'3.1', (3, 1)),
])
def test_parse(text, blocks):
    assert tuple(parse(text)) == blocks


@pytest.mark.parametrize('bad', ['', '  ', 'six', '6.0.', '.6', '6..0', '6.0-beta', '6.a', '-1', None, True, (), (1, 'x'), '1 2'])
def test_parse_refuses(bad):
    with pytest.raises(VersionError):
        parse(bad)
    assert not is_version(bad)


@pytest.mark.parametrize('first, second, expected', [
    ('6.0.10', '6.0.9', 1),
    ('6.0.9', '6.0.10', -1),
    ('6.0', '6.0.0', 0),
    ('6', '6.0.0.0', 0),
    ('6.0.0.1', '6', 1),
    ('10', '9.99.99', 1),
    ('6.0.51.22965', '6.0.51.22966', -1),
    ('01.2', '1.2', 0),
])
def test_compare(first, second, expected):
    assert compare(first, second) == expected
    assert compare(second, first) == -expected


def test_version_orders_sorts_and_hashes_numerically():
    found = sorted(parse(t) for t in ['6.0.10', '6.0.9', '6.0.9.1', '6.1', '6'])
    assert [v.text for v in found] == ['6', '6.0.9', '6.0.9.1', '6.0.10', '6.1']
    assert parse('6.0') == parse('6') and hash(parse('6.0')) == hash(parse('6'))
    assert len({parse('1'), parse('1.0'), parse('1.0.0')}) == 1
    assert parse('6.0') == '6.0.0' and parse('6.0') != 'garbage'
    assert parse('1.2') < '1.10' and parse('2') >= '1.99' and parse('2') <= '2.0'
    assert str(parse('V1_2')) == '1.2' and repr(parse('1.2')) == "Version('1.2')"
    assert parse('1.0').key == (1,) and isinstance(parse('1'), Version)


@pytest.mark.parametrize('old, new, blocks, major, kind', [
    ('6.0.51.22965', '6.0.51.22966', 3, False, 'minor'),   # KSAMU: same scripts version
    ('6.0.51.22965', '6.0.52.1', 3, True, 'major'),        # KSAMU: scripts version changed
    ('6.0.51.22965', '6.0.51.22965', 3, False, 'none'),
    ('1.2', '1.3', 1, False, 'minor'),
    ('1.9', '2.0', 1, True, 'major'),
    ('1.2', '1.3', 2, True, 'major'),
    ('6', '6.0.0.5', 3, False, 'minor'),                  # missing blocks are zeros
    (None, '1.0', 1, True, 'major'),                      # from nothing
    (None, None, 1, False, 'none'),
])
def test_major_and_kind(old, new, blocks, major, kind):
    assert is_major_change(old, new, blocks) is major
    assert change_kind(old, new, blocks) == kind


def test_major_part_and_bad_blocks():
    assert major_part('6.0.51.22965', 3) == (6, 0, 51)
    assert major_part('6', 3) == (6, 0, 0)
    with pytest.raises(VersionError):
        major_part('6', 0)
