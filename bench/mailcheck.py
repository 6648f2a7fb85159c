"""After a run into Dovecot: does the recipient's Maildir hold exactly the messages fetched?

Dovecot's LMTP puts its own header lines in front of each message (Return-Path,
Delivered-To, Received) and stores Maildir files with LF line ends (POP3 handed out
CRLF), so a stored file is compared with an original as: header lines, then the
original's bytes, line ends aside.

* ``id_header=True`` (ours): the file is split right after the ``X-PopAccounts-Id``
  line our LMTP delivery adds; what follows must be one of the originals exactly, and
  only header lines may precede it. The ids must all differ.
* ``id_header=False`` (fetchmail, which adds a Received line of its own): the file is
  matched to the original with its Message-ID and must end with that original's bytes,
  header lines before them. fetchmail takes the original's ``Return-Path`` line out (it
  becomes the envelope sender, and Dovecot writes a new one on top), so the original is
  compared without it.

Every file is checked (a sample would miss a duplicate; 2,000 files take about a
tenth of a second), and every original must be found exactly once.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

_ID_LINE = re.compile(rb"^X-PopAccounts-Id: ([0-9a-f]+)\n", re.M)
_MESSAGE_ID = re.compile(rb"^Message-ID: (\S+)\n", re.M | re.I)
_RETURN_PATH = re.compile(rb"^Return-Path:[^\n]*\n(?:[ \t][^\n]*\n)*", re.M | re.I)


def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _without_return_path(message: bytes) -> bytes:
    head, sep, body = message.partition(b"\n\n")
    return _RETURN_PATH.sub(b"", head + b"\n")[:-1] + sep + body


def files(maildir: Path) -> list[Path]:
    """The messages of a Maildir (``new/`` and ``cur/``; none when it does not exist)."""
    out = []
    for sub in ("new", "cur"):
        try:
            out.extend(maildir / sub / name for name in sorted(os.listdir(maildir / sub)))
        except FileNotFoundError:
            pass
    return out


def _only_headers(prefix: bytes) -> bool:
    """Header lines (or nothing): no blank line, ends at a line end."""
    return not prefix or (prefix.endswith(b"\n") and b"\n\n" not in prefix
                          and not prefix.startswith(b"\n"))


def check(maildir: Path, originals: list[bytes], *, id_header: bool) -> dict[str, Any]:
    """Count, and each file's bytes against the originals; ``ok`` when all match once."""
    wanted = [_lf(m) for m in originals]
    index = {m: i for i, m in enumerate(wanted)}
    by_msgid: dict[bytes, int] = {}
    for i, m in enumerate(wanted):
        found = _MESSAGE_ID.search(m.split(b"\n\n", 1)[0] + b"\n")
        if found:
            by_msgid[found.group(1)] = i
    tails = wanted if id_header else [_without_return_path(m) for m in wanted]
    seen: Counter[int] = Counter()
    ids: Counter[bytes] = Counter()
    bad: list[str] = []
    paths = files(maildir)
    for path in paths:
        data = _lf(path.read_bytes())
        if id_header:
            found = _ID_LINE.search(data)
            if found is None:
                bad.append(f"{path.name}: no X-PopAccounts-Id line")
                continue
            ids[found.group(1)] += 1
            prefix, rest = data[:found.start()], data[found.end():]
            which = index.get(rest)
            if which is None or not _only_headers(prefix):
                bad.append(f"{path.name}: the bytes after X-PopAccounts-Id are no original")
                continue
        else:
            head = data.split(b"\n\n", 1)[0] + b"\n"
            mids = _MESSAGE_ID.findall(head)
            which = by_msgid.get(mids[-1]) if mids else None
            if which is None or not data.endswith(tails[which]) or not _only_headers(
                    data[:len(data) - len(tails[which])]):
                bad.append(f"{path.name}: does not end with its original's bytes")
                continue
        seen[which] += 1
    duplicates = sum(n - 1 for n in seen.values())
    repeated_ids = sum(n - 1 for n in ids.values())
    missing = len(wanted) - len(seen)
    return {
        "files": len(paths), "expected": len(wanted), "matched": sum(seen.values()),
        "duplicates": duplicates, "repeated_ids": repeated_ids, "missing": missing, "bad": len(bad),
        "bad_examples": bad[:3],
        "ok": len(paths) == len(wanted) and not bad and not duplicates and not missing
              and not repeated_ids,
    }
