# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.clinops.upgrade.plugins.module_utils.schema.sql import (
    SqlSplitError, Statement, is_commit, is_transaction_control, parse_header, split_statements)


def sqls(text, dialect):
    return [s.sql for s in split_statements(text, dialect)]


@pytest.mark.parametrize('dialect', ['postgresql', 'mysql', 'sqlite', 'firebird'])
def test_plain_statements_strings_and_comments(dialect):
    text = ("-- header; comment\nCREATE TABLE t (id int);\n\n"
            "INSERT INTO t VALUES (1, 'a;b', 'it''s');  /* block; comment */\n"
            "select 1")
    # comments between statements are not sent; those inside a statement are
    assert sqls(text, dialect) == ["CREATE TABLE t (id int)", "INSERT INTO t VALUES (1, 'a;b', 'it''s')", "select 1"]
    assert [s.line for s in split_statements(text, dialect)] == [2, 4, 5]
    assert sqls('SELECT /* a; */ 1;', dialect) == ['SELECT /* a; */ 1']


def test_lines_and_bom():
    statements = split_statements('\ufeffSELECT 1;\n\n\nSELECT\n 2;', 'sqlite')
    assert statements == [Statement('SELECT 1', 1), Statement('SELECT\n 2', 4)]


def test_postgresql_dollar_quotes_nested_comments_and_escapes():
    text = ("CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;\n"
            "CREATE FUNCTION g() RETURNS text AS $body$ SELECT 'x;$$'; $body$ LANGUAGE sql;\n"
            "SELECT E'a\\';b', $1, a$b;\n"
            "/* outer /* inner; */ still; */ SELECT 3;\n"
            "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\n"
            "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\nSELECT 4;")
    assert sqls(text, 'postgresql') == [
        'CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql',
        "CREATE FUNCTION g() RETURNS text AS $body$ SELECT 'x;$$'; $body$ LANGUAGE sql",
        "SELECT E'a\\';b', $1, a$b",
        'SELECT 3',
        'CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END',
        'CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()',
        'SELECT 4',
    ]


def test_postgresql_plain_string_keeps_backslash():
    assert sqls("SELECT 'a\\';SELECT 2;", 'postgresql') == ["SELECT 'a\\'", 'SELECT 2']


def test_mysql_delimiter_routines_and_comments():
    text = ("DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; END//\nDELIMITER ;\n"
            "CREATE PROCEDURE q() BEGIN IF 1 THEN SELECT 'x;'; END IF; "
            "CASE WHEN 1 THEN SELECT 2; END CASE; WHILE 0 DO SELECT 3; END WHILE; END;\n"
            "# hash comment;\nSELECT \"a;\\\"\";\nSELECT 1--1;\nSELECT `weird;name` FROM t;\n"
            "BEGIN NOT ATOMIC SELECT 1; END;\n"
            "CREATE DEFINER=`root`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END;")
    assert sqls(text, 'mysql') == [
        'CREATE PROCEDURE p() BEGIN SELECT 1; END',
        "CREATE PROCEDURE q() BEGIN IF 1 THEN SELECT 'x;'; END IF; CASE WHEN 1 THEN SELECT 2; END CASE; "
        "WHILE 0 DO SELECT 3; END WHILE; END",
        'SELECT "a;\\""',
        'SELECT 1--1',
        'SELECT `weird;name` FROM t',
        'BEGIN NOT ATOMIC SELECT 1; END',
        'CREATE DEFINER=`root`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; END',
    ]


def test_mysql_routine_without_begin_ends_at_first_semicolon():
    assert sqls('CREATE FUNCTION f() RETURNS INT RETURN 1;\nSELECT 2;', 'mysql') == [
        'CREATE FUNCTION f() RETURNS INT RETURN 1', 'SELECT 2']


def test_firebird_set_term_declarations_and_case():
    text = ("SET TERM ^ ;\nCREATE PROCEDURE p AS BEGIN EXIT; END^\nSET TERM ; ^\n"
            "SELECT 1 FROM rdb$database;\n"
            "CREATE TRIGGER t FOR x BEFORE INSERT AS DECLARE VARIABLE v INT; BEGIN IF (1=1) THEN BEGIN v = 1; END "
            "v = CASE WHEN 1=1 THEN 1 ELSE 2 END; END;\n"
            "ALTER TRIGGER t INACTIVE;\n"
            "EXECUTE BLOCK AS DECLARE n INT; BEGIN n = 1; END;\n"
            "CREATE PROCEDURE ext EXTERNAL NAME 'x' ENGINE udr;\n"
            "COMMIT WORK;")
    assert sqls(text, 'firebird') == [
        'CREATE PROCEDURE p AS BEGIN EXIT; END',
        'SELECT 1 FROM rdb$database',
        'CREATE TRIGGER t FOR x BEFORE INSERT AS DECLARE VARIABLE v INT; BEGIN IF (1=1) THEN BEGIN v = 1; END '
        'v = CASE WHEN 1=1 THEN 1 ELSE 2 END; END',
        'ALTER TRIGGER t INACTIVE',
        'EXECUTE BLOCK AS DECLARE n INT; BEGIN n = 1; END',
        "CREATE PROCEDURE ext EXTERNAL NAME 'x' ENGINE udr",
        'COMMIT WORK',
    ]


def test_sqlite_trigger_and_brackets():
    text = 'CREATE TRIGGER tr AFTER INSERT ON a BEGIN UPDATE b SET x = [c;d]; DELETE FROM c; END;\nSELECT `a;`;'
    assert sqls(text, 'sqlite') == [
        'CREATE TRIGGER tr AFTER INSERT ON a BEGIN UPDATE b SET x = [c;d]; DELETE FROM c; END', 'SELECT `a;`']


@pytest.mark.parametrize('text, dialect, where', [
    ("SELECT 'open;", 'sqlite', 'line 1'),
    ('SELECT 1;\n/* open', 'postgresql', 'line 2'),
    ('SELECT $x$ open', 'postgresql', 'line 1'),
    ('SELECT "open', 'firebird', 'line 1'),
    ('\\connect other\nSELECT 1;', 'postgresql', 'meta-command'),
])
def test_split_errors(text, dialect, where):
    with pytest.raises(SqlSplitError, match=where):
        split_statements(text, dialect)


def test_unknown_dialect():
    with pytest.raises(ValueError):
        split_statements('SELECT 1', 'oracle')


def test_comment_only_file_has_no_statement():
    assert not split_statements('-- nothing here\n/* nor; here */\n', 'postgresql')


@pytest.mark.parametrize('text, phase', [
    ('-- phase: pre\nSELECT 1;', 'pre'),
    ('\n-- Author: someone\n--phase:POST\nSELECT 1;', 'post'),
    ('SELECT 1;\n-- phase: pre', 'offline'),   # only the leading comment lines count
    ('CREATE TABLE t (id int);', 'offline'),
])
def test_header(text, phase):
    assert parse_header(text)['phase'] == phase


@pytest.mark.parametrize('text', ['-- phase: later\nSELECT 1;', '-- phase: pre\n-- phase: post\n'])
def test_header_errors(text):
    with pytest.raises(ValueError):
        parse_header(text)


@pytest.mark.parametrize('sql, control, commit', [
    ('BEGIN', True, False),
    ('START TRANSACTION', True, False),
    ('COMMIT', True, True),
    ('commit work', True, True),
    ('-- c\nROLLBACK', True, False),
    ('BEGIN NOT ATOMIC SELECT 1; END', False, False),
    ('START SLAVE', False, False),
    ('SELECT 1', False, False),
    ('COMMIT RETAIN', True, False),
])
def test_transaction_control(sql, control, commit):
    statement = Statement(sql, 1)
    assert is_transaction_control(statement) is control
    assert is_commit(statement) is commit
