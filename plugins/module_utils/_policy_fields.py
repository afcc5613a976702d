# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One field of a policy (or of an option read as one): the checks every part of the policy shares.

Private to the collection; pure, Python 3.8. Each function takes the raw value and the field's
name (``policy.rules[0].users``) and returns the value checked, or raises PolicyError naming
the field and the value (quoted cut short: ``_messages.shown_value``). ``None`` means "not set"
(``present``); a single string stands for a one-element list (``as_list``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.dbhygiene.sessions.plugins.module_utils._durations import digits_value, is_int
from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import PolicyError
from ansible_collections.dbhygiene.sessions.plugins.module_utils._messages import shown_value

MAX_NAME_LENGTH = 200
_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def key_name(key):
    """A mapping key as written in a field name: plain when short text, else quoted and cut."""
    if isinstance(key, str) and 0 < len(key) <= 40 and key.isprintable() and " " not in key:
        return key
    return shown_value(key, 30)


def check_keys(raw, allowed, field):
    if not isinstance(raw, dict):
        raise PolicyError(
            field, raw, "expected a mapping with keys {}, got {}".format(", ".join(allowed), shown_value(raw, 40))
        )
    for key in raw:
        if key not in allowed:
            raise PolicyError(
                f"{field}.{key_name(key)}",
                key,
                "unknown key {} (allowed: {})".format(shown_value(key, 20), ", ".join(allowed)),
            )


def present(raw, key):
    return raw.get(key) is not None


def as_list(value, field, allow_empty):
    """A list from a list, or a single string as a one-element list."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise PolicyError(field, value, f"expected a list (or a single string), got {shown_value(value)}")
    if not value and not allow_empty:
        raise PolicyError(
            field,
            value,
            "empty list: it would match nothing; remove the condition or list at least one value",
        )
    return list(value)


def scalar_text(value, field):
    """A list element as text. Ints are accepted (a numeric user name in YAML)."""
    if isinstance(value, str):
        return value
    if is_int(value):
        return str(value)
    raise PolicyError(field, value, f"expected a string, got {shown_value(value)}")


def parse_bool(value, field):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise PolicyError(field, value, f"expected a boolean (true or false), got {shown_value(value)}")


def parse_name(value, field, default):
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise PolicyError(field, value, f"expected a string, got {shown_value(value)}")
    if len(value) > MAX_NAME_LENGTH:
        raise PolicyError(field, value, f"name {shown_value(value)} is longer than {MAX_NAME_LENGTH} characters")
    return value


def parse_count(value, field, low, high, what):
    """A whole number from `low` to `high` (30.0 from a template is 30), or a PolicyError."""
    number = None
    if is_int(value):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value == int(value):
        number = int(value)
    else:
        number = digits_value(value)
    if number is None or not low <= number <= high:
        raise PolicyError(
            field, value, f"expected a whole number of {what} from {low} to {high}, got {shown_value(value)}"
        )
    return number
