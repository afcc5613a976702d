# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials masked in a session's statement text: the one redaction of the collection.

Private to the collection; pure (standard library only, Python 3.8), so the drivers apply
it where they build a session record (``query``) and every result, diff, message, trail
line and report downstream has the masked text, whatever the verbosity or where the work
runs; the controller's trail and reports apply it once more (``_trail.redact_query``).

What it masks: in a statement that carries a credential (``CREDENTIAL_WORDS``, found
anywhere in the text, inside literals and comments too: ``ALTER ROLE ... PASSWORD``,
``IDENTIFIED BY`` / ``WITH ... AS`` / ``VIA ... USING``, ``SET PASSWORD``, ``OPTIONS
(password ...)``, a connection string, ``pgp_sym_encrypt(..., 'key')``), every string
literal becomes ``'********'``: quoted strings with both engines' escapes, PostgreSQL
``E'...'`` and dollar quotes (``$$...$$``, ``$tag$...$tag$``), MySQL double-quoted
strings. A literal cut short (the server and the driver truncate the text) is masked to
the end of the text.

What it keeps: the statement's shape (keywords, identifiers, numbers, comments,
placeholders), so an auditor still reads which role's password was set; and every
statement without a marker, untouched. Over-masking is the accepted error, never
under-masking: the quoting rules of a text depend on server settings the listing does not
carry (PostgreSQL ``standard_conforming_strings``, MySQL ``NO_BACKSLASH_ESCAPES``), so
the text is read under each plausible set of rules (``Dialect``) and a character that is
inside a literal under any of them is masked. Linear time: one scan per set of rules, and
only for a text with a marker.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import re
from typing import Iterable, overload

MASK = "'********'"

# A statement carrying any of these (case-insensitive, anywhere) has its literals masked.
# password/passwd/pwd: PASSWORD '..', SET PASSWORD, MASTER_PASSWORD=, conninfo password=,
# ODBC PWD=; identified: IDENTIFIED BY / WITH plugin AS / VIA plugin USING; secret,
# credential, passphrase: options and functions named so; crypt, hmac: pgcrypto's and
# MySQL's keyed functions (pgp_sym_encrypt, AES_ENCRYPT, ...); authentication_string:
# mysql.user written directly. Plain substring tests: most statements have none, and a
# listing holds thousands.
CREDENTIAL_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "identified",
    "secret",
    "credential",
    "crypt",
    "hmac",
    "authentication_string",
)
# scheme://user:password@ (a host:port as well: over-masking)
_USERINFO = re.compile(r"://[^\s/?#@'\"]*:")

_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$", re.UNICODE)
# Where a literal, a quoted identifier or a comment may start; every other character is skipped.
_SPECIAL = re.compile(r"['\"`$#/-]")
# The body of a quoted token after its opening quote, by (quote, backslash escapes): linear,
# each alternative starts with a different character.
_QUOTED_BODY: dict[tuple[str, bool], re.Pattern[str]] = dict(
    (
        (quote, escapes),
        re.compile(
            f"(?:[^{quote}\\\\]|\\\\.|{quote}{quote})*" if escapes else f"(?:[^{quote}]|{quote}{quote})*", re.DOTALL
        ),
    )
    for quote in "'\"`"
    for escapes in (True, False)
)
_COMMENT_MARK = re.compile(r"/\*|\*/")


class Dialect(object):
    """One set of lexical rules under which a statement text is read.

    ``backslash``: a backslash escapes the next character inside plain quoted strings
    (MySQL by default; PostgreSQL with standard_conforming_strings off); ``mysql``: MySQL's
    lexing (double quotes are strings, backticks quote identifiers, ``#`` and ``-- ``
    comments, ``/*!...*/`` is code, no dollar quotes); else PostgreSQL's (double quotes
    are identifiers, ``E'...'`` escapes, dollar quotes, nested ``/* */`` comments).
    """

    def __init__(self, backslash: bool, mysql: bool) -> None:
        self.backslash = backslash
        self.mysql = mysql


POSTGRESQL = (Dialect(backslash=False, mysql=False), Dialect(backslash=True, mysql=False))
MYSQL = (Dialect(backslash=True, mysql=True), Dialect(backslash=False, mysql=True))
# The sets of rules each engine's texts are read under; an engine not here, or none
# given, is read under all of them.
DIALECTS = {"postgresql": POSTGRESQL, "mysql": MYSQL}


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _quoted_end(text: str, start: int, quote: str, backslash: bool) -> int:
    """The end (exclusive) of the quoted token opened at `start`: a doubled quote stays
    inside, and with `backslash` an escaped character too; unterminated: the text's end."""
    body = _QUOTED_BODY[(quote, backslash)].match(text, start + 1)
    end = body.end() if body else start + 1  # every body pattern matches, the empty body too
    return end + 1 if end < len(text) and text[end] == quote else len(text)


def _comment_end(text: str, start: int, nested: bool) -> int:
    """The end (exclusive) of the /* comment opened at `start` (nested ones too in PostgreSQL)."""
    if not nested:
        end = text.find("*/", start + 2)
        return len(text) if end < 0 else end + 2
    depth = 1
    for mark in _COMMENT_MARK.finditer(text, start + 2):
        depth += 1 if mark.group(0) == "/*" else -1
        if depth == 0:
            return mark.end()
    return len(text)


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    return len(text) if end < 0 else end + 1


def _e_string(text: str, index: int) -> bool:
    """Whether the quote at `index` opens a PostgreSQL E'...' string (backslash escapes)."""
    return index > 0 and text[index - 1] in "eE" and (index < 2 or not _is_word(text[index - 2]))


def literal_spans(text: str, dialect: Dialect) -> list[tuple[int, int]]:
    """(start, end) of every string literal in `text` read under `dialect`, in order."""
    spans = []
    index, size = 0, len(text)
    while index < size:
        special = _SPECIAL.search(text, index)
        if special is None:
            break
        index = special.start()
        char = text[index]
        if char == "'" or (char == '"' and dialect.mysql):
            escapes = dialect.backslash or (not dialect.mysql and _e_string(text, index))
            end = _quoted_end(text, index, char, escapes)
            spans.append((index, end))
        elif char in '"`':  # a quoted identifier (PostgreSQL's "...", MySQL's `...`)
            end = _quoted_end(text, index, char, False)
        elif char == "$" and not dialect.mysql and (index == 0 or not _is_word(text[index - 1])):
            tag = _DOLLAR_TAG.match(text, index)
            if tag is None:
                end = index + 1
            else:
                closing = text.find(tag.group(0), tag.end())
                end = size if closing < 0 else closing + len(tag.group(0))
                spans.append((index, end))
        elif text.startswith("--", index) and (
            not dialect.mysql or index + 2 == size or text[index + 2].isspace() or ord(text[index + 2]) < 32
        ):
            end = _line_end(text, index)
        elif char == "#" and dialect.mysql:
            end = _line_end(text, index)
        elif text.startswith("/*", index):
            if dialect.mysql and (text.startswith("/*!", index) or text.startswith("/*M!", index)):
                end = index + 2  # MySQL / MariaDB executable comment: its body is code
            else:
                end = _comment_end(text, index, nested=not dialect.mysql)
        else:
            end = index + 1
        index = end
    return spans


def _merged(spans: Iterable[tuple[int, int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _account_part(text: str, start: int, end: int, user_end: int) -> bool:
    """Whether the literal text[start:end] is a part of a MySQL account name ('user'@'host':
    a credential never sits there): a quoted user directly before '@', or the quoted host
    directly after the '@' of the user kept before it (`user_end`)."""
    quote = text[start]
    if quote not in "'\"" or end - start < 2 or text[end - 1] != quote:
        return False
    if start == user_end + 1 and text[user_end] == "@":
        return True
    return text.startswith("@", end) and end + 1 < len(text) and (_is_word(text[end + 1]) or text[end + 1] in "'\"`")


def carries_credential(text: object) -> bool:
    """Whether a statement text holds something that sets or carries a credential."""
    if text is None:
        return False
    lowered = str(text).lower()
    return any(word in lowered for word in CREDENTIAL_WORDS) or ("://" in lowered and bool(_USERINFO.search(lowered)))


@overload
def redact_statement(text: None, engine: str | None = None, limit: int | None = None) -> None:
    """None stays None."""


@overload
def redact_statement(text: object, engine: str | None = None, limit: int | None = None) -> str:
    """A text (any other value as its str()) comes back as text."""


def redact_statement(text: object, engine: str | None = None, limit: int | None = None) -> str | None:
    """`text` (a statement, perhaps truncated) with its literals masked when it carries a
    credential; `engine` ("postgresql", "mysql"; None: any) picks the quoting rules. None
    stays None; a text without a credential marker comes back unchanged. `limit`: the
    result cut to that many characters (a mask is longer than an empty literal)."""
    if text is None:
        return None
    text = str(text)
    if not carries_credential(text):
        return text[:limit]
    spans = []
    for dialect in DIALECTS.get(engine or "") or POSTGRESQL + MYSQL:
        spans.extend(literal_spans(text, dialect))
    pieces, done, user_end = [], 0, -2
    for start, end in _merged(spans):
        if _account_part(text, start, end, user_end):
            user_end = end
            continue
        pieces += [text[done:start], MASK]
        done = end
    pieces.append(text[done:])
    return "".join(pieces)[:limit]
