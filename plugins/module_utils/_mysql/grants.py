# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rights of a MySQL / MariaDB login and accounts as text: SHOW GRANTS read
(global privileges, executable procedures), accounts split and quoted.

Private to the collection. Standard library only. Only the privilege list of a grant line is
read: the rest (it may carry a password hash) is dropped.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_GLOBAL_GRANT_RE = re.compile(r"^GRANT (.+?) ON \*\.\* TO ", re.IGNORECASE)


# GRANT <privileges> ON [PROCEDURE] <schema>.<object> TO ...: (privileges, PROCEDURE, schema, object).
_OBJECT_GRANT_RE = re.compile(
    r"^GRANT (.+?) ON (PROCEDURE )?(\*|`(?:[^`]|``)+`)\.(\*|`(?:[^`]|``)+`) TO ", re.IGNORECASE
)


def global_privileges(grant_lines):
    """The set of global privileges (upper case) in SHOW GRANTS output lines.

    ALL / ALL PRIVILEGES is kept as the single token "ALL". Only the privilege
    list is read: the rest of a line (it may carry a password hash) is dropped.
    """
    privileges = set()
    for line in grant_lines:
        found = _GLOBAL_GRANT_RE.match(line or "")
        if not found:
            continue
        for privilege in found.group(1).split(","):
            name = " ".join(privilege.split()).upper()
            if name in ("ALL", "ALL PRIVILEGES"):
                name = "ALL"
            if name:
                privileges.add(name)
    return privileges


def executable_procedures(grant_lines, names):
    """The procedures among `names` ('schema.name') that SHOW GRANTS lines let the login EXECUTE:
    EXECUTE (or ALL) on *.*, on the schema, or on the procedure itself."""
    granted = set()
    for line in grant_lines:
        found = _OBJECT_GRANT_RE.match(line or "")
        if not found:
            continue
        privileges = set(" ".join(p.split()).upper() for p in found.group(1).split(","))
        if not privileges & {"EXECUTE", "ALL", "ALL PRIVILEGES"}:
            continue
        schema, name = (part.strip("`").replace("``", "`") for part in (found.group(3), found.group(4)))
        if found.group(2) and name == "*":
            continue
        granted.add((schema, name))
    usable = []
    for full in names:
        schema, name = full.split(".", 1)
        if {("*", "*"), (schema, "*"), (schema, name)} & granted:
            usable.append(full)
    return usable


# An account written user@host: the last '@' splits (a user name may contain '@'). Where the text
# comes from decides what a text without a host part, or with nothing before the '@', means:
# split_account (the server's CURRENT_USER()) or split_roles_key (a dbhygiene_timeouts roles key).
def split_account(current_user):
    """('user', 'host') from CURRENT_USER() text 'user@host' (the user may contain '@'). The
    server's own text: '@host' is the anonymous account ('', 'host'); a text without '@' (None:
    '') is the any-host account, host '%'."""
    user, sep, host = (current_user or "").rpartition("@")
    if not sep:
        return current_user or "", "%"
    return user, host


def split_roles_key(name):
    """(user, host or None) of a roles key of ``dbhygiene_timeouts``: ``app`` (every account
    named app: host None) or ``app@10.%`` (one account). A user's text: a key with nothing before
    its last '@' is a user name as written (host None), never the anonymous account."""
    user, sep, host = str(name).rpartition("@")
    if not sep or not user:
        return str(name), None
    return user, host


def quote_account(current_user):
    """An account as written in a GRANT hint: 'user'@'host' (quotes doubled)."""
    user, host = split_account(current_user)
    user, host = (part.replace("'", "''") for part in (user, host))
    return f"'{user}'@'{host}'"
