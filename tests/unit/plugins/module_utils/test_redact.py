# -*- coding: utf-8 -*-
"""The one redaction of statement texts (module_utils/_redact.py): each credential syntax of
both engines, each quoting, a text cut mid-literal, what it must keep, and the drivers'
records built with it."""

import datetime
import random

import pytest
from ansible_collections.dbhygiene.sessions.plugins.module_utils import _mysql_flavours as fl
from ansible_collections.dbhygiene.sessions.plugins.module_utils._driver import QUERY_MAX_CHARS
from ansible_collections.dbhygiene.sessions.plugins.module_utils._postgresql import statements as pg
from ansible_collections.dbhygiene.sessions.plugins.module_utils._redact import MASK, redact_statement
from ansible_collections.dbhygiene.sessions.plugins.plugin_utils._trail import redact_query

SECRET = "Zx9Qv7Wm4Kp2"  # no 3 characters of it occur in any statement around it

# (statement, engine, what must stay readable); SECRET is the credential in each.
CREDENTIAL_STATEMENTS = [
    # PostgreSQL
    ("ALTER ROLE bob PASSWORD 'Zx9Qv7Wm4Kp2'", "postgresql", "ALTER ROLE bob PASSWORD " + MASK),
    ("alter role bob with encrypted password 'it''s Zx9Qv7Wm4Kp2'", "postgresql", "encrypted password " + MASK),
    ("CREATE ROLE bob LOGIN PASSWORD 'SCRAM-SHA-256$4096:Zx9Qv7Wm4Kp2$a:b'", "postgresql", "LOGIN PASSWORD " + MASK),
    ("CREATE USER bob PASSWORD E'back\\'slash Zx9Qv7Wm4Kp2'", "postgresql", "CREATE USER bob PASSWORD E" + MASK),
    ("CREATE USER bob PASSWORD e'\\\\Zx9Qv7Wm4Kp2'", "postgresql", "PASSWORD e" + MASK),
    ("ALTER USER bob PASSWORD $$dollar ' Zx9Qv7Wm4Kp2$$", "postgresql", "ALTER USER bob PASSWORD " + MASK),
    ("ALTER ROLE bob PASSWORD $pw$tag $$ Zx9Qv7Wm4Kp2$pw$ VALID UNTIL 'infinity'", "postgresql", "VALID UNTIL " + MASK),
    ("ALTER ROLE bob PASSWORD U&'Zx9Qv7Wm4Kp2'", "postgresql", "PASSWORD U&" + MASK),
    ("ALTER ROLE \"Bob's\" PASSWORD 'Zx9Qv7Wm4Kp2'", "postgresql", 'ALTER ROLE "Bob\'s" PASSWORD ' + MASK),
    (
        "CREATE USER MAPPING FOR bob SERVER remote OPTIONS (user 'bob', password 'Zx9Qv7Wm4Kp2')",
        "postgresql",
        "OPTIONS (user " + MASK + ", password " + MASK + ")",
    ),
    (
        "ALTER USER MAPPING FOR bob SERVER remote OPTIONS (SET password 'Zx9Qv7Wm4Kp2')",
        "postgresql",
        "OPTIONS (SET password " + MASK + ")",
    ),
    # standard_conforming_strings off: the backslash escapes the quote
    ("ALTER ROLE bob PASSWORD 'a\\' Zx9Qv7Wm4Kp2'", "postgresql", "ALTER ROLE bob PASSWORD " + MASK),
    # standard_conforming_strings on: 'dom\' ends at its quote, the password is a literal of its own
    (
        "CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'dom\\', password 'Zx9Qv7Wm4Kp2')",
        "postgresql",
        "OPTIONS (user ",
    ),
    ("/* don't */ ALTER ROLE bob PASSWORD 'Zx9Qv7Wm4Kp2'", "postgresql", "/* don't */ ALTER ROLE bob PASSWORD " + MASK),
    (
        "/* a /* b' */ c' */ ALTER ROLE bob PASSWORD 'Zx9Qv7Wm4Kp2'",
        "postgresql",
        "c' */ ALTER ROLE bob PASSWORD " + MASK,
    ),
    ("ALTER ROLE bob PASSWORD 'Zx9Qv7Wm4Kp2' -- it's", "postgresql", "ALTER ROLE bob PASSWORD " + MASK + " -- it's"),
    ("SELECT dblink_connect('host=h password=Zx9Qv7Wm4Kp2')", "postgresql", "SELECT dblink_connect(" + MASK + ")"),
    ("CREATE SUBSCRIPTION s CONNECTION 'host=h password=Zx9Qv7Wm4Kp2' PUBLICATION p", "postgresql", "PUBLICATION p"),
    ("SELECT dblink('postgresql://bob:Zx9Qv7Wm4Kp2@db/x', 'SELECT 1')", "postgresql", "SELECT dblink(" + MASK),
    ("SELECT pgp_sym_encrypt(data, 'Zx9Qv7Wm4Kp2') FROM t", "postgresql", "pgp_sym_encrypt(data, " + MASK + ")"),
    # MySQL / MariaDB
    ("CREATE USER 'bob'@'%' IDENTIFIED BY 'Zx9Qv7Wm4Kp2'", "mysql", "CREATE USER 'bob'@'%' IDENTIFIED BY " + MASK),
    ("ALTER USER bob@localhost IDENTIFIED BY PASSWORD '*Zx9Qv7Wm4Kp2'", "mysql", "IDENTIFIED BY PASSWORD " + MASK),
    (
        "ALTER USER bob IDENTIFIED WITH mysql_native_password AS '*Zx9Qv7Wm4Kp2'",
        "mysql",
        "mysql_native_password AS " + MASK,
    ),
    (
        "ALTER USER bob IDENTIFIED WITH caching_sha2_password BY 'Zx9Qv7Wm4Kp2'",
        "mysql",
        "caching_sha2_password BY " + MASK,
    ),
    ("ALTER USER bob IDENTIFIED VIA ed25519 USING PASSWORD('Zx9Qv7Wm4Kp2')", "mysql", "USING PASSWORD(" + MASK + ")"),
    ("CREATE USER bob IDENTIFIED VIA ed25519 USING 'Zx9Qv7Wm4Kp2'", "mysql", "VIA ed25519 USING " + MASK),
    ("SET PASSWORD FOR 'bob'@'localhost' = PASSWORD('Zx9Qv7Wm4Kp2')", "mysql", "'bob'@'localhost' = PASSWORD("),
    ("SET PASSWORD = 'Zx9Qv7Wm4Kp2'", "mysql", "SET PASSWORD = " + MASK),
    ('SET PASSWORD FOR `bob`@`%` = "Zx9Qv7Wm4Kp2"', "mysql", "SET PASSWORD FOR `bob`@`%` = " + MASK),
    ("ALTER USER bob IDENTIFIED BY 'back\\'slash Zx9Qv7Wm4Kp2'", "mysql", "ALTER USER bob IDENTIFIED BY " + MASK),
    ("ALTER USER bob IDENTIFIED BY 'dbl''quote Zx9Qv7Wm4Kp2'", "mysql", "ALTER USER bob IDENTIFIED BY " + MASK),
    ('ALTER USER bob IDENTIFIED BY "dq\\" Zx9Qv7Wm4Kp2"', "mysql", "ALTER USER bob IDENTIFIED BY " + MASK),
    ('ALTER USER bob IDENTIFIED BY "dq"" Zx9Qv7Wm4Kp2"', "mysql", "ALTER USER bob IDENTIFIED BY " + MASK),
    ("ALTER USER bob IDENTIFIED BY _utf8mb4'Zx9Qv7Wm4Kp2'", "mysql", "IDENTIFIED BY _utf8mb4" + MASK),
    # NO_BACKSLASH_ESCAPES: 'dom\' ends at its quote
    (
        "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'dom\\', PASSWORD 'Zx9Qv7Wm4Kp2')",
        "mysql",
        "OPTIONS (USER ",
    ),
    ("ALTER USER bob /*!80000 IDENTIFIED BY 'Zx9Qv7Wm4Kp2' */", "mysql", "/*!80000 IDENTIFIED BY " + MASK + " */"),
    ("ALTER USER bob /*M!100500 IDENTIFIED BY 'Zx9Qv7Wm4Kp2' */", "mysql", "/*M!100500 IDENTIFIED BY " + MASK),
    ("# don't\nALTER USER bob IDENTIFIED BY 'Zx9Qv7Wm4Kp2'", "mysql", "# don't\nALTER USER bob IDENTIFIED BY " + MASK),
    (
        "-- don't\nALTER USER bob IDENTIFIED BY 'Zx9Qv7Wm4Kp2'",
        "mysql",
        "-- don't\nALTER USER bob IDENTIFIED BY " + MASK,
    ),
    ("CHANGE MASTER TO MASTER_USER='repl', MASTER_PASSWORD='Zx9Qv7Wm4Kp2'", "mysql", "MASTER_PASSWORD=" + MASK),
    ("GRANT ALL ON *.* TO 'bob'@'%' IDENTIFIED BY 'Zx9Qv7Wm4Kp2'", "mysql", "TO 'bob'@'%' IDENTIFIED BY " + MASK),
    ("SELECT AES_ENCRYPT(c, 'Zx9Qv7Wm4Kp2') FROM t", "mysql", "SELECT AES_ENCRYPT(c, " + MASK + ") FROM t"),
    ("UPDATE mysql.user SET authentication_string = 'Zx9Qv7Wm4Kp2'", "mysql", "authentication_string = " + MASK),
]


def _ids(cases):
    return ["%s-%d" % (case[1], number) for number, case in enumerate(cases)]


def _leaks(text):
    """The pieces of SECRET (3 characters or more) found in `text`."""
    return [SECRET[i : i + 3] for i in range(len(SECRET) - 2) if SECRET[i : i + 3] in text]


@pytest.mark.parametrize("statement, engine, kept", CREDENTIAL_STATEMENTS, ids=_ids(CREDENTIAL_STATEMENTS))
def test_each_credential_syntax_is_masked_and_the_statement_stays_readable(statement, engine, kept):
    assert SECRET in statement
    for rules in (engine, None):  # the engine's quoting rules, and every engine's (the trail's)
        redacted = redact_statement(statement, rules)
        assert not _leaks(redacted), redacted
        assert MASK in redacted
    assert kept in redact_statement(statement, engine)
    assert not _leaks(redact_query(statement))


@pytest.mark.parametrize("statement, engine, kept", CREDENTIAL_STATEMENTS, ids=_ids(CREDENTIAL_STATEMENTS))
def test_a_statement_cut_anywhere_leaks_no_part_of_the_credential(statement, engine, kept):
    """The server and the driver cut a long statement: a literal left open is masked to the end."""
    del kept
    for cut in range(statement.index(SECRET), len(statement) + 1):
        for rules in (engine, None):
            assert not _leaks(redact_statement(statement[:cut], rules)), (cut, statement[:cut])


@pytest.mark.parametrize(
    "statement, engine, redacted",
    [
        ("ALTER ROLE bob PASSWORD 'open", "postgresql", "ALTER ROLE bob PASSWORD " + MASK),
        ("ALTER ROLE bob PASSWORD $x$open $$", "postgresql", "ALTER ROLE bob PASSWORD " + MASK),
        ("ALTER ROLE bob PASSWORD E'open\\'", "postgresql", "ALTER ROLE bob PASSWORD E" + MASK),
        ('SET PASSWORD = "open', "mysql", "SET PASSWORD = " + MASK),
        (
            "SET PASSWORD FOR 'bob'@'localhost' = PASSWORD('op",
            "mysql",
            "SET PASSWORD FOR 'bob'@'localhost' = PASSWORD(",
        ),
    ],
)
def test_an_unterminated_literal_is_masked_to_the_end(statement, engine, redacted):
    assert redact_statement(statement, engine).startswith(redacted)
    assert "open" not in redact_statement(statement, engine)[len("ALTER ROLE bob PASSWORD ") :]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM orders WHERE note = 'it''s' AND a$b$c = $1",
        "UPDATE t SET v = $$x$$ WHERE k = E'\\n' -- pass",
        "SELECT 'http://example.org/a' FROM t",
        "SELECT 1",
        "",
    ],
)
def test_a_statement_without_a_credential_comes_back_unchanged(statement):
    for engine in ("postgresql", "mysql", None):
        assert redact_statement(statement, engine) == statement


def test_a_marker_in_an_identifier_masks_only_literals():
    assert redact_statement('SELECT "password" FROM "t"', "postgresql") == 'SELECT "password" FROM "t"'
    assert redact_statement("SELECT password FROM t WHERE id = 3", "mysql") == "SELECT password FROM t WHERE id = 3"
    assert redact_statement("SELECT passwd FROM t WHERE u = 'bob'", "mysql") == "SELECT passwd FROM t WHERE u = " + MASK


def test_identifiers_keywords_numbers_comments_and_accounts_are_kept():
    assert (
        redact_statement("ALTER ROLE \"Bob\" WITH LOGIN CONNECTION LIMIT 5 PASSWORD 'pw' /* note */", "postgresql")
        == "ALTER ROLE \"Bob\" WITH LOGIN CONNECTION LIMIT 5 PASSWORD '********' /* note */"
    )
    assert (
        redact_statement("CREATE USER 'bob'@'10.%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 3", "mysql")
        == "CREATE USER 'bob'@'10.%' IDENTIFIED BY '********' WITH MAX_USER_CONNECTIONS 3"
    )
    # every engine's rules: a PostgreSQL identifier could be a MySQL string, so it is masked
    assert redact_statement("ALTER ROLE \"Bob\" PASSWORD 'pw'") == "ALTER ROLE '********' PASSWORD '********'"


def test_none_limit_and_idempotence():
    assert redact_statement(None) is None and redact_query(None) is None
    statement = "ALTER ROLE bob PASSWORD '' VALID UNTIL ''"
    assert len(redact_statement(statement, "postgresql")) > len(statement)  # a mask is longer than ''
    assert (
        redact_statement(statement, "postgresql", limit=len(statement)) == redact_statement(statement)[: len(statement)]
    )
    assert redact_statement("SELECT " + "x" * 50, limit=10) == "SELECT xxx"
    for statement, engine, _kept in CREDENTIAL_STATEMENTS:
        once = redact_statement(statement, engine)
        assert redact_statement(once, engine) == once
        assert redact_statement(once) == redact_statement(statement)


# ------------------------------------------------------------ generated statements
_HOSTILE = ["'", "''", '"', "\\", "\\'", "$", "$$", "$a$", "--", "/*", "*/", "#", "@", "\n", "%s", "€", " "]


def _secret(rng):
    core = "%010x" % rng.getrandbits(40)
    pieces = rng.choices(_HOSTILE, k=rng.randint(0, 4)) + [core]
    rng.shuffle(pieces)
    return "".join(pieces), core


def _quote(s, quote="'", escape="\\", prefix=""):
    """`s` as a literal: the quote doubled, or escaped with a backslash (`escape`; then a
    backslash is escaped too)."""
    if escape:
        s = s.replace("\\", "\\\\").replace(quote, "\\" + quote)
    else:
        s = s.replace(quote, quote + quote)
    return prefix + quote + s + quote


def _dollar(s, tag):
    return tag + s + tag if tag not in s else _quote(s, escape=None)


# The server settings a statement can be written for, each with the ways to write a
# string literal under them. One statement is written for one setting.
MODES = {
    "postgresql": [
        [  # standard_conforming_strings on (the default)
            lambda s: _quote(s, escape=None),
            lambda s: _quote(s, prefix="E"),
            lambda s: _dollar(s, "$q$"),
            lambda s: _dollar(s, "$$"),
        ],
        [  # standard_conforming_strings off
            _quote,
            lambda s: _quote(s, prefix="E"),
            lambda s: _dollar(s, "$$"),
        ],
    ],
    "mysql": [
        [  # the default sql_mode
            _quote,
            lambda s: _quote(s, '"'),
            lambda s: _quote(s, prefix="_utf8mb4"),
            lambda s: _quote(s.replace("\\", "\\\\"), escape=None),
        ],
        [  # NO_BACKSLASH_ESCAPES
            lambda s: _quote(s, escape=None),
            lambda s: _quote(s, '"', escape=None),
            lambda s: _quote(s, escape=None, prefix="_utf8mb4"),
        ],
    ],
}


_TEMPLATES = {
    "postgresql": [
        "ALTER ROLE {ident} WITH ENCRYPTED PASSWORD {secret} VALID UNTIL {other}",
        "CREATE USER MAPPING FOR {ident} SERVER s OPTIONS (user {other}, password {secret})",
        "{comment} CREATE ROLE {ident} LOGIN PASSWORD {secret}",
        "SELECT dblink_connect({other}); ALTER USER {ident} PASSWORD {secret}",
    ],
    "mysql": [
        "CREATE USER {other}@{other} IDENTIFIED BY {secret}",
        "SET PASSWORD FOR {ident}@{other} = PASSWORD({secret})",
        "{comment} ALTER USER {ident} IDENTIFIED WITH mysql_native_password AS {secret}",
        "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER {other}, PASSWORD {secret})",
        "ALTER USER {ident} IDENTIFIED VIA ed25519 USING PASSWORD({secret})",
    ],
}


def _identifier(rng, engine):
    name = rng.choice(["bob", "it's", 'q"uote', "back`tick", "a$b$", "x--y"])
    if engine == "postgresql":
        return '"' + name.replace('"', '""') + '"'
    return "`" + name.replace("`", "``") + "`"


def _comment(rng, engine):
    body = rng.choice(["don't", 'say "x', "a$b$", "-- no"])
    if engine == "postgresql":
        return rng.choice(["/* " + body + " /* nested' */ */", "-- " + body + "\n"])
    return rng.choice(["/* " + body + " */", "# " + body + "\n", "-- " + body + "\n"])


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_generated_credential_statements_never_show_the_secret(engine):
    """2,000 statements per engine: hostile secrets, each quoting of the engine, quoted
    identifiers and comments holding quotes, other literals ending in a backslash."""
    rng = random.Random(19 + len(engine))
    for _case in range(2000):
        quotings = rng.choice(MODES[engine])
        secret, core = _secret(rng)
        other = _secret(rng)[0]
        statement = rng.choice(_TEMPLATES[engine]).format(
            ident=_identifier(rng, engine),
            secret=rng.choice(quotings)(secret),
            other=rng.choice(quotings)(other + rng.choice(["", "\\"])),
            comment=_comment(rng, engine),
        )
        for rules in (engine, None):
            redacted = redact_statement(statement, rules)
            assert core not in redacted, (statement, redacted)
            cut = rng.randint(0, len(statement))
            assert core not in redact_statement(statement[:cut], rules), statement[:cut]


def test_any_text_is_handled():
    """Not SQL at all: a str back, no exception (a second pass may mask more: never less)."""
    rng = random.Random(7)
    alphabet = "'\"`$\\/*-#@\n aP"
    for _case in range(3000):
        text = "password " + "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        for engine in ("postgresql", "mysql", None):
            once = redact_statement(text, engine)
            assert isinstance(once, str) and once.startswith("password ")
            assert isinstance(redact_statement(once, engine), str)


# ------------------------------------------------------------ the drivers' records
def test_postgresql_records_carry_the_masked_statement():
    row = {name: None for name in pg._LIST_COLUMNS}  # pylint: disable=protected-access
    row.update(
        pid=4711,
        backend_start=datetime.datetime(2024, 5, 1, 8, 0, tzinfo=datetime.timezone.utc),
        query="ALTER ROLE bob PASSWORD 'Zx9Qv7Wm4Kp2'",
        superuser=False,
    )
    assert pg.normalize_row(row)["query"] == "ALTER ROLE bob PASSWORD " + MASK


def test_mysql_records_carry_the_masked_statement_cut_to_the_record_size():
    columns = dict.fromkeys(fl.COLUMNS)
    columns.update(id=7, user="app", host="127.0.0.1:5000", command="Query", elapsed_ms=10)
    head = "ALTER USER bob IDENTIFIED BY '" + "x" * (QUERY_MAX_CHARS - 40)
    columns["info"] = (head + SECRET + "' -- " + "y" * 2000).encode()
    record = fl.normalize_row(tuple(columns[name] for name in fl.COLUMNS))
    assert record["query"] == "ALTER USER bob IDENTIFIED BY " + MASK
    columns["info"] = "SET PASSWORD = " + "'', " * 600
    assert len(fl.normalize_row(tuple(columns[name] for name in fl.COLUMNS))["query"]) == QUERY_MAX_CHARS
