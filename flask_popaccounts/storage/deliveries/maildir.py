"""Maildir delivery: Dovecot- or Courier-style Maildir++ on disk, exactly once.

``Maildir(root)`` where ``root`` is a path or ``(owner_id, account_id) -> path`` (the
user's Maildir, e.g. ``/var/vmail/example.org/alice/Maildir``). Each message is written
the Maildir way: into ``tmp/``, fsync'ed, then linked into ``new/`` (or into ``cur/``
with the ``S`` flag when a filter marked it read, ``F`` when flagged), and ``tmp/``'s
name removed; before each ledger commit the directories written to are fsync'ed, so
the names are durable before the ledger says "delivered". Folders are Maildir++
subfolders (``.Work.Projects/``, names in IMAP's modified UTF-7 as Dovecot keeps them;
"Junk" for the scanners' junk); the bytes are kept exactly as fetched.

**Exactly once.** The file name is deterministic: ``<delivery id>.popaccounts,S=<size>``,
the id derived from the account and the UIDL. Delivering a message whose name is
already in the folder (in ``new/``, or in ``cur/`` under any flags: the user may have
read it meanwhile) is a no-op. So a crash after the link and before the ledger commit
costs nothing: the next session fetches the message again, finds the file and only
records it (``idempotent = True``: no intent records are needed). A name is looked up in
a listing of ``new/`` and ``cur/`` read once per folder and session (a Maildir of
100,000 messages lists in a few tens of milliseconds).

Errors: a full disk or quota (ENOSPC, EDQUOT) is
:class:`~...engine.delivery.PlatformFull`; a Maildir we may not write (EACCES, EROFS...)
is :class:`~...engine.delivery.DeliveryRefused`; anything else is transient.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ...engine.delivery import (
    DeliveryContext,
    DeliveryError,
    DeliveryItem,
    DeliveryRefused,
    DeliveryUnavailable,
    PlatformFull,
)
from ...engine.imapsearch import imap_utf7

#: The part of our file names after the delivery id (Dovecot keys files by the part
#: before the first "," or ":").
SUFFIX = ".popaccounts"
COPY_CHUNK = 1024 * 1024

RootFn = Callable[[str, int], "str | os.PathLike[str]"]

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
            errno.ELOOP, errno.ENAMETOOLONG}


def _error(exc: OSError, what: str) -> DeliveryError:
    detail = f"maildir {what}: {exc.strerror or exc}"
    if exc.errno in _FULL:
        return PlatformFull(detail=detail)
    if exc.errno in _REFUSED:
        return DeliveryRefused(detail=detail)
    return DeliveryUnavailable(detail=detail)


def folder_dir_name(folder: str) -> str | None:
    """The Maildir++ directory of an IMAP folder name ("/" nests); None for INBOX."""
    parts = [imap_utf7(p.strip()).replace(".", "_") for p in folder.split("/") if p.strip()]
    if not parts or (len(parts) == 1 and parts[0].upper() == "INBOX"):
        return None
    return "." + ".".join(parts)


def file_name(item: DeliveryItem) -> str:
    """The message's deterministic base name (before any ``:2,`` flags)."""
    return f"{item.delivery_id}{SUFFIX},S={item.size}"


def _key(name: str) -> str:
    return name.split(":", 1)[0].split(",", 1)[0]


class Maildir:
    """The ``delivery`` hook for Maildir++ on disk (see the module docstring).

    ``file_mode``/``dir_mode``: permissions of what is created; ``owner``: a
    ``(uid, gid)`` to give it to (the platform's mail user) when this process may.
    """

    name = "maildir"
    idempotent = True

    def __init__(self, root: str | os.PathLike[str] | RootFn, *, file_mode: int = 0o600,
                 dir_mode: int = 0o700, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.owner = owner

    def open(self, context: DeliveryContext) -> MaildirSession:
        root = self.root(context.owner_id, context.account_id) if callable(
            self.root) else self.root
        return MaildirSession(Path(root), self)


class MaildirSession:
    """One fetch session's deliveries into one Maildir."""

    def __init__(self, root: Path, config: Maildir) -> None:
        self.root = root
        self.config = config
        self._known: dict[Path, set[str]] = {}  #: folder -> keys of the names in new/, cur/
        self._dirty: set[Path] = set()  #: directories to fsync before the ledger commits

    def _folder(self, folder: str) -> Path:
        sub = folder_dir_name(folder)
        return self.root if sub is None else self.root / sub

    def _ensure(self, path: Path) -> None:
        if path in self._known:
            return
        for d in (path, path / "tmp", path / "new", path / "cur"):
            if not d.is_dir():
                d.mkdir(mode=self.config.dir_mode, parents=True, exist_ok=True)
                self._give(d)
                self._dirty.add(d.parent)
        if path != self.root and not (path / "maildirfolder").exists():
            (path / "maildirfolder").touch(mode=self.config.file_mode)  # Maildir++
            self._give(path / "maildirfolder")
        keys: set[str] = set()
        for sub in ("new", "cur"):
            keys.update(_key(n) for n in os.listdir(path / sub))
        self._known[path] = keys

    def _give(self, path: Path) -> None:
        if self.config.owner is not None:
            os.chown(path, *self.config.owner)

    def find(self, item: DeliveryItem) -> bool:
        """Whether the message is in its folder already (under any flags)."""
        path = self._folder(item.folder)
        try:
            self._ensure(path)
        except OSError as exc:
            raise _error(exc, "read") from None
        return _key(file_name(item)) in self._known[path]

    def deliver(self, item: DeliveryItem) -> None:
        """tmp/, fsync, link into new/ (cur/ with flags); a repeat is a no-op."""
        if self.find(item):
            return
        path = self._folder(item.folder)
        base = file_name(item)
        flags = ("F" if item.flagged else "") + ("S" if item.seen else "")
        dest = path / "cur" / f"{base}:2,{flags}" if flags else path / "new" / base
        tmp = path / "tmp" / base
        try:
            self._write(tmp, item.spool)
            try:
                os.link(tmp, dest)
            except FileExistsError:
                pass  # (the listing said no: it came meanwhile; the same bytes)
            os.unlink(tmp)
        except OSError as exc:
            raise _error(exc, "write") from None
        self._known[path].add(_key(base))
        self._dirty.add(dest.parent)

    def _write(self, tmp: Path, spool: IO[bytes]) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     self.config.file_mode)
        try:
            while chunk := spool.read(COPY_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._give(tmp)

    def flush(self) -> None:
        """fsync every directory a name was added to: the links are durable now."""
        try:
            for d in sorted(self._dirty):
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _error(exc, "sync") from None
        self._dirty.clear()

    def close(self) -> None:
        self._known.clear()
