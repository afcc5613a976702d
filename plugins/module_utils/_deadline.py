# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bounds of one host's run, shared by the runner and the drain: the whole host's deadline
(``host_timeout``), the check of the timeouts before connecting, the server's sweep lock.

Every wait is bounded: the whole host by ``host_timeout`` (a ``Deadline`` checked before each
step: the lock, the listing, each signal batch, the grace and the confirm waits, which are cut
at it). A real run holds the server's sweep lock, so two sweeps never work one server at once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time

from ansible_collections.dbhygiene.sessions.plugins.module_utils._errors import (
    DeadlineError,
    PolicyError,
    SessionError,
    SweepBusyError,
)

DEFAULT_HOST_TIMEOUT = 300.0
MAX_WAIT_TIMEOUT = 3600.0
MAX_HOST_TIMEOUT = 86400.0
# The sweep lock is waited for at most this long, and never into the time the waits need.
LOCK_WAIT_MAX = 60.0


class _Clock(object):
    """Time, injectable so the waiting logic can be unit tested without sleeping."""

    def now(self):
        return time.monotonic()

    def sleep(self, seconds):
        time.sleep(seconds)


class Deadline(object):
    """The whole host's deadline (module option host_timeout), on an injectable clock.

    Started before connecting; every step of the sweep checks it first and every
    wait is cut at it. `target` (the server) is named in the messages once known.
    """

    def __init__(self, seconds, clock=None):
        self.clock = clock or _Clock()
        self.seconds = seconds
        self.target = None
        self._ends = self.clock.now() + seconds

    def remaining(self):
        return max(0.0, self._ends - self.clock.now())

    def error(self, when):
        return DeadlineError(
            f"host_timeout ({self.seconds:g}s) ran out {when}{f' on {self.target}' if self.target else ''}; "
            "raise host_timeout, or lower wait_timeout and policy.grace"
        )

    def check(self, step):
        """Raise DeadlineError unless time is left to start `step`."""
        if self.remaining() <= 0:
            raise self.error("before " + step)


def grace_needed(policy):
    """Seconds of grace a run of `policy` may wait (0 unless a rule cancels then terminates)."""
    if any(rule.action == "cancel_then_terminate" for rule in policy.rules):
        return policy.grace
    return 0


def _check_seconds(field, value, low, high, low_ok=True):
    """A timeout option (`field`) must be a finite number of seconds from `low` (or above it,
    unless `low_ok`) to `high`: PolicyError naming the field and the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(field, value, f"must be a number of seconds, got {value!r}")
    if low_ok and value < low:
        raise PolicyError(field, value, f"must be {low:g} or more seconds, got {value!r}")
    if not low_ok and value <= low:
        raise PolicyError(field, value, f"must be more than {low:g} seconds, got {value!r}")
    if not math.isfinite(value) or value > high:
        raise PolicyError(field, value, f"must be a finite number of seconds, at most {high:g}, got {value!r}")


def check_timeouts(policy, wait_timeout, host_timeout):
    """Fail (PolicyError naming the field), before connecting, unless every wait is finite
    and the waits a run may do fit in the host's deadline."""
    _check_seconds("wait_timeout", wait_timeout, 0, MAX_WAIT_TIMEOUT)
    _check_seconds("host_timeout", host_timeout, 0, MAX_HOST_TIMEOUT, low_ok=False)
    grace = grace_needed(policy)
    if grace + wait_timeout >= host_timeout:
        waits = f"policy.grace ({grace:g}s) + wait_timeout ({wait_timeout:g}s) = {grace + wait_timeout:g}s"
        if not grace:
            waits = f"wait_timeout ({wait_timeout:g}s)"
        raise PolicyError(
            "host_timeout",
            host_timeout,
            f"{waits} must be less than host_timeout ({host_timeout:g}s), which also covers connecting, listing and "
            f"signalling: lower {'them' if grace else 'it'} or raise host_timeout",
        )


def take_sweep_lock(driver, policy, wait_timeout, deadline, target):
    """Hold the server's sweep lock, waiting at most LOCK_WAIT_MAX and never into the time the
    waits need; SweepBusyError when another sweep keeps it."""
    deadline.check("taking the sweep lock")
    timeout = max(0.0, min(LOCK_WAIT_MAX, deadline.remaining() - wait_timeout - grace_needed(policy)))
    if not driver.acquire_sweep_lock(timeout):
        raise SweepBusyError(
            f"host busy: another sweep holds the lock on {target} (waited {timeout:g}s); nothing was ended here, "
            "run again when that sweep has finished"
        )
    return True


def release_sweep_lock(driver):
    try:
        driver.release_sweep_lock()
    except SessionError:
        # Closing the connection releases the lock too; a sweep's result must not be lost to this.
        pass
