# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import common as prefs_common
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import ini as prefs_ini
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import masking as prefs_masking
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import merge as prefs_merge
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import patterns as prefs_patterns
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs import properties as prefs_properties
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.common import PrefsError
from ansible_collections.clinops.upgrade.plugins.module_utils.prefs.merge import merge


# ------------------------------------------------------------------ three-way merge, per format

MERGE_CASES = [
    # (format, old, new, defaults, expected result, taken keys, dropped keys)
    pytest.param(
        'properties',
        b'# old\nport=9090\ncache=64\nlegacy=1\n',
        b'# new comment\nport=8080\ncache=128\nfresh=yes\n',
        b'port=8080\ncache=64\nlegacy=1\n',
        b'# new comment\nport=9090\ncache=128\nfresh=yes\n',
        ['port'], ['legacy'], id='properties-customised-vs-stale-default'),
    pytest.param(
        'properties',
        b'a=1\nb=2\n', b'a=0\nb=0\nc=3\n', None,
        b'a=1\nb=2\nc=3\n', ['a', 'b'], [], id='properties-no-defaults-every-old-value-counts'),
    pytest.param(
        'properties',
        b'a=1\nsite.extra=x\n', b'a=1\n', b'a=1\n',
        b'a=1\nsite.extra=x\n', ['site.extra'], [], id='properties-site-added-key-carried'),
    pytest.param(
        'ini',
        b'[Backup]\r\nInterval=12\r\nPath=C:\\old\r\n[Web]\r\nAutostart=1\r\nPort=8081\r\n',
        b'; new\r\n[Backup]\r\nInterval=24\r\nPath=C:\\data\r\nKeep=7\r\n[Web]\r\nAutostart=0\r\nPort=8080\r\n',
        b'[Backup]\r\nInterval=24\r\nPath=C:\\old\r\n[Web]\r\nAutostart=0\r\nPort=8080\r\n',
        b'; new\r\n[Backup]\r\nInterval=12\r\nPath=C:\\data\r\nKeep=7\r\n[Web]\r\nAutostart=1\r\nPort=8081\r\n',
        ['Backup/Interval', 'Web/Autostart', 'Web/Port'], [], id='ini-crlf-sections'),
    pytest.param(
        'ini',
        b'[web]\nport = 1\n[mine]\nx = 2\n', b'[Web]\nPort = 0\n', b'[web]\nport = 0\n',
        b'[Web]\nPort = 1\n\n[mine]\nx = 2\n', ['web/port', 'mine/x'], [], id='ini-case-insensitive-and-new-section'),
    pytest.param(
        'json',
        b'{"server": {"port": 9090, "tls": true}, "old": 1}',
        b'{\n    "server": {\n        "port": 8080,\n        "tls": false,\n        "workers": 4\n    }\n}\n',
        b'{"server": {"port": 8080, "tls": true}, "old": 1}',
        b'{\n    "server": {\n        "port": 9090,\n        "tls": false,\n        "workers": 4\n    }\n}\n',
        ['server/port'], ['old'], id='json-indent-kept'),
    pytest.param(
        'xml',
        b'<?xml version="1.0"?>\n<map>\n  <entry key="port" value="9090"/>\n  <entry key="cache" value="64"/>\n</map>\n',
        b'<?xml version="1.0"?>\n<!-- keep me -->\n<map>\n  <entry key="port" value="8080"/>\n  <entry key="cache" value="128"/>\n</map>\n',
        b'<map><entry key="port" value="8080"/><entry key="cache" value="64"/></map>',
        b'<?xml version="1.0"?>\n<!-- keep me -->\n<map>\n  <entry key="port" value="9090"/>\n  <entry key="cache" value="128"/>\n</map>\n',
        ["map/entry[@key='port']/@value"], [], id='xml-java-prefs'),
    pytest.param(
        'xml',
        b'<c><web><port>81</port><auto/></web></c>', b'<c>\n <web>\n  <port>80</port>\n  <auto/>\n </web>\n</c>', None,
        b'<c>\n <web>\n  <port>81</port>\n  <auto/>\n </web>\n</c>', ['c/web/port', 'c/web/auto'], [], id='xml-text-and-empty'),
    pytest.param(
        'xml',
        b'<c><web><auto>yes</auto></web></c>', b'<c><web><auto/></web></c>', None,
        b'<c><web><auto>yes</auto></web></c>', ['c/web/auto'], [], id='xml-self-closing-gets-text'),
]


@pytest.mark.parametrize('fmt, old, new, defaults, expected, taken, dropped', MERGE_CASES)
def test_merge(fmt, old, new, defaults, expected, taken, dropped):
    result, report = merge(fmt, old, new, defaults, 'f')
    assert result == expected
    assert report['keys'] == taken
    assert report['dropped'] == dropped
    assert report['changed'] is (expected != new)


@pytest.mark.parametrize('fmt, old, new, defaults, expected, taken, dropped', MERGE_CASES)
def test_merge_is_idempotent(fmt, old, new, defaults, expected, taken, dropped):
    result = merge(fmt, old, new, defaults, 'f')[0]
    again, report = merge(fmt, old, result, defaults, 'f')
    assert again == result
    assert report['changed'] is False


def test_merge_reports_added_keys():
    report = merge('properties', b'a=1\n', b'a=1\nb=2\nc=3\n', None, 'f')[1]
    assert report['added'] == ['b', 'c']


def test_unchanged_file_is_returned_byte_for_byte():
    new = b'# weird   spacing\r\n  a   :   1  \r\n\r\n!bang\r\nb=2'
    result, report = merge('properties', b'b=2\n', new, None, 'f')
    assert result == new
    assert report['changed'] is False


# ------------------------------------------------------------------ Java properties details

def test_properties_latin1_and_unicode_escapes_round_trip():
    old = 'name=Zürich \\u2603\ncity=M\\u00fcnchen\n'.encode('latin-1')
    new = b'name=x\ncity=y\n'
    result, report = merge('properties', old, new, None, 'f')
    doc = prefs_properties.PropertiesDoc(result)
    assert doc.items() == {'name': 'Zürich \u2603', 'city': 'München'}
    assert b'Z\xfcrich \\u2603' in result  # the old raw text, in ISO-8859-1, kept
    assert report['keys'] == ['name', 'city']


def test_properties_escape_of_values_outside_latin1():
    doc = prefs_properties.PropertiesDoc(b'k=v\n')
    doc.set('k', 'Grüße \u20ac\n end')
    data = doc.to_bytes()
    assert data == b'k=Gr\xfc\xdfe \\u20AC\\n end\n'
    assert prefs_properties.PropertiesDoc(data).items()['k'] == 'Grüße \u20ac\n end'


def test_properties_crlf_continuation_and_separators_kept():
    new = b'# head\r\nlist = a,\\\r\n    b,\\\r\n    c\r\nother : 1\r\nspace value\r\n'
    doc = prefs_properties.PropertiesDoc(new)
    assert doc.items() == {'list': 'a,b,c', 'other': '1', 'space': 'value'}
    doc.set('other', '2')
    doc.set('space', 'v2')
    assert doc.to_bytes() == b'# head\r\nlist = a,\\\r\n    b,\\\r\n    c\r\nother : 2\r\nspace v2\r\n'


def test_properties_added_key_uses_file_newline_and_separator():
    doc = prefs_properties.PropertiesDoc(b'a = 1\r\nb = 2')
    doc.add('new key', 'x')
    assert doc.to_bytes() == b'a = 1\r\nb = 2\r\nnew\\ key = x\r\n'


@pytest.mark.parametrize('data', [b'a=\\u12\n', b'a=\\uZZZZ\n', b'a=1\x00\n'])
def test_properties_malformed_refused(data):
    with pytest.raises(PrefsError, match='malformed|NUL'):
        prefs_properties.PropertiesDoc(data, 'bad.properties')


# ------------------------------------------------------------------ INI, JSON, XML details

def test_ini_keeps_utf16_bom_and_encoding():
    new = '\ufeff[a]\r\nx=1\r\n'.encode('utf-16-le')
    old = '[a]\r\nx=Größe\r\n'.encode('utf-8')
    result = merge('ini', old, new, None, 'f')[0]
    assert result.startswith(b'\xff\xfe')
    assert result.decode('utf-16') == '[a]\r\nx=Größe\r\n'


def test_ini_latin1_value_not_representable_refused():
    new = '[a]\nx=\xe9\n'.encode('latin-1')  # not UTF-8: read as ISO-8859-1
    with pytest.raises(PrefsError, match='encoding'):
        merge('ini', '[a]\nx=\u2603\n'.encode('utf-8'), new, None, 'f')


@pytest.mark.parametrize('data, match', [
    (b'[a\nx=1\n', 'section'), (b'[a]\nx=1\nX=2\n', 'twice'), (b'[a]\n[A]\n', 'twice')])
def test_ini_ambiguous_refused(data, match):
    with pytest.raises(PrefsError, match=match):
        prefs_ini.IniDoc(data, 'x.ini')


def test_json_compact_and_non_ascii():
    new = '{"a":1,"b":"x"}'.encode('utf-8')
    result = merge('json', '{"a":2,"b":"Zürich"}'.encode('utf-8'), new, None, 'f')[0]
    assert result == b'{"a":2,"b":"Z\\u00fcrich"}'  # an ASCII-only file stays ASCII-only
    new = '{"a": 1, "b": "ä"}'.encode('utf-8')
    result = merge('json', '{"a":2,"b":"Zürich"}'.encode('utf-8'), new, None, 'f')[0]
    assert result == '{"a": 2, "b": "Zürich"}'.encode('utf-8')


def test_json_key_with_slash_and_type_checks():
    old = b'{"a/b": 1, "flag": true}'
    new = b'{"a/b": 0, "flag": 1}'
    result, report = merge('json', old, new, None, 'f')
    assert json.loads(result) == {'a/b': 1, 'flag': True}
    assert report['keys'] == ['a~1b', 'flag']


@pytest.mark.parametrize('fmt, data', [('json', b'{"a": }'), ('json', b'[1, 2]'), ('xml', b'<a><b></a>'),
                                       ('xml', b'\xff\xfe<\x00a\x00/\x00>\x00')])
def test_malformed_refused(fmt, data):
    with pytest.raises(PrefsError):
        prefs_merge.parse(fmt, data, 'x')


def test_xml_latin1_declared_encoding_kept():
    decl = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    old = decl + '<c><city>Zürich</city><sym>\u2603</sym></c>'.encode('latin-1', 'xmlcharrefreplace')
    new = decl + b'<c><city>x</city><sym>y</sym></c>'
    result = merge('xml', old, new, None, 'f')[0]
    assert result == decl + b'<c><city>Z\xfcrich</city><sym>&#9731;</sym></c>'


def test_xml_site_added_element_and_attribute_inserted():
    old = b'<cfg>\n  <a x="0" extra="e"/>\n  <b>2</b>\n  <mine><v>9</v></mine>\n</cfg>\n'
    new = b'<cfg>\n  <a x="0"/>\n  <b>2</b>\n</cfg>\n'
    defaults = b'<cfg><a x="0"/><b>2</b></cfg>'
    result, report = merge('xml', old, new, defaults, 'f')
    assert result == b'<cfg>\n  <a x="0" extra="e"/>\n  <b>2</b>\n  <mine><v>9</v></mine>\n</cfg>\n'
    assert report['keys'] == ['cfg/a/@extra', 'cfg/mine/v']


def test_xml_escaping_of_values():
    result = merge('xml', b'<c><v a="x&quot;&lt;">a &amp; b</v></c>', b'<c><v a="1">2</v></c>', None, 'f')[0]
    assert result == b'<c><v a="x&quot;&lt;">a &amp; b</v></c>'


# ------------------------------------------------------------------ masking, key files, diff

@pytest.mark.parametrize('name, secret', [
    ('db.password', True), ('DB_PASSWD', True), ('apiKey', True), ('ssl.key', True), ('clientSecret', True),
    ('auth.token', True), ('pwd', True), ("map/entry[@key='smtp.password']/@value", True),
    ('port', False), ('keyboard.layout', False), ("map/entry[@key='port']/@value", False), ('cache.size', False)])
def test_is_secret_key(name, secret):
    assert prefs_masking.is_secret_key(name) is secret


@pytest.mark.parametrize('text, hidden, shown', [
    ('db.password=geheim\nport=1\n', 'geheim', 'port=1'),
    ('[Mail]\r\nSmtpPassword = geheim\r\nHost=x\r\n', 'geheim', 'Host=x'),
    ('{"user": "u", "token": "geheim"}', 'geheim', '"user": "u"'),
    ('<entry key="smtp.password" value="geheim"/>\n<entry key="port" value="25"/>', 'geheim', 'value="25"'),
    ('<db password="geheim" host="h"/>', 'geheim', 'host="h"'),
    ('<cfg><secret>geheim</secret></cfg>', 'geheim', '<cfg>'),
])
def test_mask_text(text, hidden, shown):
    masked = prefs_masking.mask_text(text)
    assert hidden not in masked
    assert shown in masked
    assert prefs_common.MASK in masked


def test_file_diff_never_shows_key_files():
    pem = b'-----BEGIN PRIVATE KEY-----\nMIIsecret\n-----END PRIVATE KEY-----\n'
    diff = prefs_masking.file_diff('Server Database/key.pem', None, pem)
    assert b'MIIsecret'.decode() not in diff['after']
    diff = prefs_masking.file_diff('any.bin', None, pem)
    assert 'MIIsecret' not in diff['after']
    diff = prefs_masking.file_diff('big.key', 10, 20)
    assert 'content not shown' in diff['after']


def test_file_diff_binary_and_masked_text():
    assert 'binary' in prefs_masking.file_diff('a.dat', None, b'\x00\x01\x02')['after']
    diff = prefs_masking.file_diff('a.properties', b'password=old\n', b'password=new\n')
    assert 'old' not in diff['before'] and 'new' not in diff['after']


# ------------------------------------------------------------------ paths and patterns

@pytest.mark.parametrize('path', ['/etc/passwd', '../x', 'a/../../b', 'C:\\x', '', '.', 'a/\x00'])
def test_check_item_path_refuses(path):
    with pytest.raises(PrefsError):
        prefs_patterns.check_item_path(path)


def test_check_item_path_normalises():
    assert prefs_patterns.check_item_path('./Server Database//Preferences/') == 'Server Database/Preferences'


@pytest.mark.parametrize('pattern, rel, matches', [
    ('Server Database/Preferences', 'Server Database/Preferences/Backup/x.xml', True),
    ('Server Database/Preferences', 'Server Database/PreferencesOld/x', False),
    ('*.pem', 'cert.pem', True), ('*.pem', 'sub/cert.pem', False),
    ('**/*.properties', 'a/b/c.properties', True), ('**/*.properties', 'c.properties', True),
    ('a/**', 'a/b/c', True), ('a/**/z', 'a/z', True), ('a/**/z', 'a/b/c/z', True),
    ('file[0-9].txt', 'file3.txt', True), ('file[!0-9].txt', 'file3.txt', False), ('a?c', 'a/c', False),
    ('dots.in.name', 'dotsXinXname', False),
])
def test_pattern_matching(pattern, rel, matches):
    assert prefs_patterns.item_matches(prefs_patterns.pattern_regex(pattern), rel) is matches


def test_select_files_last_item_wins_and_missing():
    items = [dict(path='p', mode='copy'), dict(path='p/license.properties', mode='keep'), dict(path='nothing', mode='copy')]
    selection, missing = prefs_patterns.select_files(items, ['p/a.properties', 'p/license.properties'], [])
    assert selection['p/a.properties']['mode'] == 'copy'
    assert selection['p/license.properties']['mode'] == 'keep'
    assert missing == ['nothing']


@pytest.mark.parametrize('rel, fmt', [('a.properties', 'properties'), ('x/A.INI', 'ini'), ('c.json', 'json'), ('web.config', 'xml')])
def test_resolve_format_auto(rel, fmt):
    assert prefs_patterns.resolve_format('auto', rel) == fmt


def test_resolve_format_unknown():
    with pytest.raises(PrefsError, match='cannot tell the format'):
        prefs_patterns.resolve_format('auto', 'Preferences/settings.4DSettings')
    with pytest.raises(PrefsError, match='unknown format'):
        prefs_patterns.resolve_format('yaml', 'a.yml')


@pytest.mark.parametrize('path, root, inside', [
    ('/a/b', '/a', True), ('/a', '/a', True), ('/ab', '/a', False), ('/', '/', True), ('c:\\x\\y', 'c:\\x', True)])
def test_is_inside(path, root, inside):
    assert prefs_patterns.is_inside(path, root) is inside
