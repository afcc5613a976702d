# -*- coding: utf-8 -*-
# Copyright (c) dbhygiene.sessions contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the controller writes for the roles: private (mode 0600), atomic.

Private to the collection; no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import tempfile


def private_dir(path):
    if path and not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)


def write_private(path, text, replace=True):
    """Write `text` to `path` atomically with mode 0600.

    replace=False: never over an existing file; returns False (nothing written)
    when `path` exists. Otherwise returns True."""
    directory = os.path.dirname(path) or "."
    private_dir(directory)
    fd, tmp = tempfile.mkstemp(prefix=".dbhygiene-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
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


def controller_path(path):
    """A controller path as given by a user: ~ expanded, made absolute."""
    return os.path.abspath(os.path.expanduser(str(path)))


@contextlib.contextmanager
def locked_directory(path, blocking=True):
    """Hold an exclusive ``flock`` on the directory `path`; yields True, or False when not held.

    blocking=True: the directory is created (0700) if need be and the lock waited
    for. blocking=False: never waits and never creates; yields False when another
    process holds the lock or the directory is not there. A directory removed
    (or replaced) between our open and our lock is opened again under its path,
    so the lock held is always on the directory the path names."""
    fd = None
    for _attempt in range(10):
        if blocking:
            private_dir(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if not blocking:
                break
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            fd = None
            break
        opened = os.fstat(fd)
        try:
            current = os.stat(path)
        except OSError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino):
            break
        os.close(fd)
        fd = None
        if not blocking:
            break
    else:
        raise OSError(errno.EAGAIN, "the directory keeps being removed while it is locked", path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
