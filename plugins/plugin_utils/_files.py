# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the controller writes for the roles: private (mode 0600), atomic.

Private to the collection; no Ansible import.
"""

from __future__ import absolute_import, division, print_function

from __future__ import annotations  # isort: skip

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import tempfile
from typing import Callable, Iterator, Literal, overload


def private_dir(path: str) -> None:
    if path and not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)


def write_private(path: str, text: str, replace: bool = True, sync: bool = False, mode: int = 0o600) -> bool:
    """Write `text` to `path` atomically with mode 0600 (sync: on disk before it is renamed in;
    mode: another, for a file another service reads, such as the metrics file).

    replace=False: never over an existing file; returns False (nothing written)
    when `path` exists. Otherwise returns True."""
    directory = os.path.dirname(path) or "."
    private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".dbhygiene-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # A file system without hard links: create it exclusively instead.
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(out, "w", encoding="utf-8") as handle:
                handle.write(text)
        finally:
            os.unlink(tmp)
        return True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def controller_path(path: object) -> str:
    """A controller path as given by a user: ~ expanded, made absolute."""
    return os.path.abspath(os.path.expanduser(str(path)))


@overload
def open_locked(path: str, opener: Callable[[], int | None], blocking: Literal[True] = True, what: str = "file") -> int:
    """Blocking: it waits for the lock, so it always returns the fd."""


@overload
def open_locked(path: str, opener: Callable[[], int | None], blocking: bool, what: str = "file") -> int | None:
    """Not blocking: None when another process holds the lock, or when nothing is there."""


def open_locked(path: str, opener: Callable[[], int | None], blocking: bool = True, what: str = "file") -> int | None:
    """The fd `opener()` opens for `path`, held under an exclusive ``flock``, and still the
    one the path names once locked (a file renamed or a directory replaced between the
    open and the lock is opened again under its path). `opener` returns None when nothing
    is there (tried again when blocking). blocking=False never waits: None when another
    process holds the lock, or when nothing is there."""
    for _attempt in range(10):
        fd = opener()
        if fd is None:
            if not blocking:
                return None
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            opened = os.fstat(fd)
            try:
                current = os.stat(path)
            except OSError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
                return fd
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        if not blocking:
            return None
    raise OSError(errno.EAGAIN, f"the {what} keeps being replaced while it is locked", path)


@contextlib.contextmanager
def locked_directory(path: str, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on the directory `path`; yields True, or False when not held.

    blocking=True: the directory is created (0700) if need be and the lock waited
    for. blocking=False: never waits and never creates; yields False when another
    process holds the lock or the directory is not there. The lock held is always on
    the directory the path names (open_locked)."""

    def opener() -> int | None:
        if blocking:
            private_dir(path)
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:  # not made yet, or removed since
            return None

    fd = open_locked(path, opener, blocking, what="directory")
    try:
        yield fd is not None
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
