# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The planning of the MySQL / MariaDB drain (pure): which accounts to lock and to unlock,
which PUBLIC grants to restore, the record's entries and the messages.

Private to the collection; no PyMySQL import, unit tested without a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.drain_statements import (
    LOCKED,
    MARIADB,
    PUBLIC,
    REVOKED,
    RIGHT,
    parse_public_grant,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._mysql.grants import (
    split_account,
)
from ansible_collections.dbhygiene.sessions.plugins.module_utils._time import iso_utc


# ---------------------------------------------------------------- planning (pure)
def account_name(user, host):
    """'user'@'host' as in a GRANT (quotes doubled)."""
    return "'{}'@'{}'".format(user.replace("'", "''"), host.replace("'", "''"))


def text_of(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def account_rows(rows):
    """{(user, host): {"superuser", "locked", "lock_key", "global"}} from accounts_query()."""
    accounts = {}
    for user, host, superuser, lock_value, global_data in rows:
        lock_value = text_of(lock_value)
        accounts[(text_of(user), text_of(host))] = {
            "superuser": bool(superuser),
            "locked": lock_value in ("true", "1"),  # MariaDB's JSON_VALUE gives 1 / 0 for a JSON boolean
            "lock_key": lock_value,
            "global": bool(global_data),
        }
    return accounts


def _expand_roles(holders, edges):
    """{(user, host): reason} of `holders` plus every account granted (directly or through roles) a role
    among them."""
    found = dict(holders)
    changed = True
    while changed:
        changed = False
        for user, host, role_user, role_host in edges:
            via = found.get((role_user, role_host))
            if via is not None and (user, host) not in found:
                found[(user, host)] = f"{via} through role {role_user}"
                changed = True
    return found


def plan_locks(databases, accounts, holders, edges, session_users, allowed, own, recorded):
    """What a drain of `databases` locks.

    `accounts`: account_rows(); `holders`: {db: [(user, host, level)]}; `edges`: role grants;
    `session_users`: {db: set of user names}; `allowed`: user names; `own`: (user, host) of our
    login; `recorded`: {(user, host): set of dbs} of the record (locks that are ours).

    Returns (lock, extend, already): `lock` [{"user", "host", "databases", "reasons", "lock_key"}]
    to lock now; `extend` [(db, user, host, reason)] accounts locked by a drain already that this
    drain needs too (recorded for it, so that opening the other database keeps them locked);
    `already` the names of accounts locked before and not by a drain (left alone).
    """
    needed = {}  # (user, host) -> {db: reason}
    for db in databases:
        direct = {}
        for user, host, level in holders.get(db, []):
            direct.setdefault((text_of(user), text_of(host)), f"holds privileges on {db} ({level})")
        concerned = _expand_roles(direct, edges)
        for key, info in accounts.items():
            if info["global"]:
                concerned.setdefault(key, f"holds global privileges (every database, {db} included)")
            if key[0] in session_users.get(db, ()):
                concerned.setdefault(key, f"has a session on {db}")
        # A thread names its user, not the account it logged in as: every account of a user
        # name concerned is, or the sessions of that name could not all be ended for good.
        for key, reason in list(concerned.items()):
            for other in accounts:
                if other[0] == key[0] and other not in concerned:
                    concerned[other] = f"shares the user name {key[0]} with {account_name(*key)}, which {reason}"
        for key, reason in concerned.items():
            info = accounts.get(key)
            if info is None or info["superuser"] or key[0] in allowed or key == own:
                continue  # a role, a superuser, an allowed login, ourselves
            needed.setdefault(key, {})[db] = reason
    lock, extend, already = [], [], []
    for key in sorted(needed):
        user, host = key
        info, dbs = accounts[key], needed[key]
        if not info["locked"]:
            lock.append(
                {
                    "user": user,
                    "host": host,
                    "databases": [db for db in databases if db in dbs],
                    "reasons": [dbs[db] for db in databases if db in dbs],
                    "lock_key": info["lock_key"],
                }
            )
        elif key in recorded:
            extend.extend((db, user, host, dbs[db]) for db in databases if db in dbs and db not in recorded[key])
        else:
            already.append(account_name(user, host))
    return lock, extend, already


def change_entry(user, host, databases, change, reason):
    return {
        "database": databases[0] if databases else None,
        "databases": list(databases),
        "account": account_name(user, host),
        "right": RIGHT,
        "change": change,
        "grantor": None,
        "with_grant_option": None,
        "reason": reason,
    }


def public_entry(database, text, change):
    """A change entry of one grant of PUBLIC (revoked by a drain, granted back by open)."""
    grant = parse_public_grant(text) or {"privileges": text, "target": ""}
    reason = f"PUBLIC's grant on {database}: {text}"
    if change != "revoked":
        reason = f"open: undo of the drain ({reason})"
    entry = change_entry("", "", [database], change, reason)
    entry.update(account=PUBLIC, right=f"{grant['privileges']} ON {grant['target']}", grantor=None)
    entry["with_grant_option"] = bool(grant.get("grant_option"))
    return entry


def unique_grants(pairs):
    """(db, grant) pairs with each grant once (a pattern grant can match several drained databases)."""
    seen, found = set(), []
    for db, text in pairs:
        if text not in seen:
            seen.add(text)
            found.append((db, text))
    return found


def plan_public_restore(databases, rows, lines):
    """The grants of PUBLIC an open of `databases` gives back: [(db, grant_text)].

    `rows`: the record [(db, grant_text, status)]; `lines`: SHOW GRANTS FOR PUBLIC now. A grant
    another drained database still needs stays revoked; one that is there as it was (a pending
    row whose REVOKE never ran) needs nothing.
    """
    others = set(text for db, text, _status in rows if db not in databases)
    present = set(lines)
    wanted = [(db, text) for db, text, _status in rows if db in databases]
    return [(db, text) for db, text in unique_grants(wanted) if text not in others and text not in present]


def plan_unlocks(databases, record_accounts, accounts):
    """What an open of `databases` does with the recorded accounts.

    `record_accounts`: [(db, user, host, status, lock_key, reason)]. Returns (unlock, kept, gone):
    `unlock` [{"user", "host", "databases", "lock_key", "reason"}] to unlock (recorded for these
    databases only, and locked now); `kept` accounts another drained database still needs;
    `gone` recorded as locked but found unlocked or dropped (someone else changed them).
    """
    mine, others = {}, set()
    for db, user, host, status, lock_key, reason in record_accounts:
        key = (text_of(user), text_of(host))
        if db in databases:
            entry = mine.setdefault(
                key, {"databases": [], "lock_key": text_of(lock_key), "reason": reason, "status": []}
            )
            entry["databases"].append(db)
            entry["status"].append(status)
        else:
            others.add(key)
    unlock, kept, gone = [], [], []
    for key in sorted(mine):
        entry = mine[key]
        info = accounts.get(key)
        if key in others:
            kept.append(account_name(*key))
        elif info is not None and info["locked"]:
            unlock.append(
                {
                    "user": key[0],
                    "host": key[1],
                    "databases": entry["databases"],
                    "lock_key": entry["lock_key"],
                    "reason": entry["reason"],
                }
            )
        elif LOCKED in entry["status"] or info is None:
            gone.append(account_name(*key))
    return unlock, kept, gone


def _account_now(accounts, user, host):
    info = accounts.get((user, host))
    if info is None:
        return "dropped"
    return "locked" if info["locked"] else "unlocked"


def record_entries(database_rows, account_rows_, public_rows=(), accounts=None, public_lines=None):
    """The record as result entries (see RETURN `record`); `public_rows`: [(db, grant_text, status)].

    With `accounts` (account_rows()) and `public_lines` (SHOW GRANTS FOR PUBLIC now), each
    change also says what the server holds at this read (`now`): an account `locked`,
    `unlocked` or `dropped`; a grant of PUBLIC `granted` or `revoked`. A change recorded as
    about to be made (`status: pending`) by a run that died is then settled exactly."""
    entries = []
    for db, drained_at, drained_by in database_rows:
        changes = []
        for row_db, user, host, status, _lock_key, reason in account_rows_:
            if row_db == db:
                entry = change_entry(text_of(user), text_of(host), [db], "locked", reason)
                entry["status"] = status
                if accounts is not None:
                    entry["now"] = _account_now(accounts, text_of(user), text_of(host))
                changes.append(entry)
        for row_db, text, status in public_rows:
            if row_db == db:
                entry = dict(public_entry(db, text, "revoked"), status=status)
                if public_lines is not None:
                    entry["now"] = "granted" if text in public_lines else "revoked"
                changes.append(entry)
        entries.append(
            {
                "database": db,
                "drained_at": iso_utc(drained_at) if drained_at is not None else None,
                "drained_by": text_of(drained_by),
                "complete": all(change["status"] in (LOCKED, REVOKED) for change in changes),
                "changes": changes,
            }
        )
    return entries


# Databases every server has: not worth naming among what a login sees.
SYSTEM_DATABASES = ("information_schema", "performance_schema", "mysql", "sys", "dbhygiene")
SHOWN_DATABASES = 20


def missing_databases_message(missing, visible, target, flavour, login, sees_all):
    """Why a drain of `missing` stops before any change: the server, what the login sees
    (`visible`: SHOW DATABASES) and what to do. SHOW DATABASES lists only the databases a
    login holds a privilege on, unless it has SHOW DATABASES (or ALL) globally: `sees_all`."""
    names = [name for name in visible if name not in SYSTEM_DATABASES]
    seen = ", ".join(shown(name) for name in names[:SHOWN_DATABASES]) or "none but the system databases"
    if len(names) > SHOWN_DATABASES:
        seen += f" and {len(names) - SHOWN_DATABASES} more"
    asked = ", ".join(shown(name) for name in missing)
    server = f"{'MariaDB' if flavour == MARIADB else 'MySQL'} at {target}"
    if sees_all:
        return (
            f"databases: {asked} not found on {server} (it has: {seen}); check the names "
            "(dbhygiene_drain_databases); nothing was changed"
        )
    account = account_name(*split_account(login))
    return (
        f"databases: {asked} not visible to the login {account} on {server}: SHOW DATABASES lists only the "
        f"databases a login holds a privilege on (it sees: {seen}); if they exist, give the drain's login the "
        f"SHOW DATABASES privilege (GRANT SHOW DATABASES ON *.* TO {account}; a drain's login also locks "
        "accounts, so it is usually an administrator) or check the names (dbhygiene_drain_databases); "
        "nothing was changed"
    )


def account_lines(accounts, keys, override=None):
    lines = []
    for key in sorted(keys):
        locked = accounts[key]["locked"] if key in accounts else None
        if override is not None and key in override:
            locked = override[key]
        state = "gone" if locked is None else ("locked" if locked else "unlocked")
        lines.append(f"account {account_name(*key)}: {state}\n")
    return lines
