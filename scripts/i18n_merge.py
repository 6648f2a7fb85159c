"""Merge translations from PO files into a catalogue, then extract and compile.

    python scripts/i18n_merge.py FRAGMENT.po [...]            into the extension's Arabic
    python scripts/i18n_merge.py --example FRAGMENT.po [...]  into the example app's Arabic

Each fragment's non-empty translations are copied into the catalogue (a fragment's
entry wins over the catalogue's), then ``scripts/translations.sh`` brings every
catalogue in line with the sources (new strings added, gone ones dropped) and compiles.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from babel.messages.catalog import Message
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    "extension": ROOT / "flask_popaccounts/translations/ar/LC_MESSAGES/popaccounts.po",
    "example": ROOT / "example_app/translations/ar/LC_MESSAGES/messages.po",
}


def merge(target: Path, fragments: list[Path]) -> int:
    with target.open("rb") as f:
        catalogue = read_po(f, locale="ar")
    count = 0
    for fragment in fragments:
        with fragment.open("rb") as f:
            part = read_po(f, locale="ar")
        for message in part:
            if not message.id:
                continue
            strings = message.string if isinstance(message.string, (list, tuple)) else [
                message.string]
            if not all(strings):
                continue
            entry = catalogue.get(message.id)
            if entry is None:
                catalogue[message.id] = Message(message.id, message.string)
                entry = catalogue[message.id]
            else:  # (Catalog's own __setitem__ keeps the old string)
                entry.string = message.string
            entry.flags.discard("fuzzy")
            count += 1
    with target.open("wb") as f:
        write_po(f, catalogue, width=0, omit_header=False)
    return count


def main(argv: list[str]) -> None:
    which = "extension"
    if argv and argv[0] == "--example":
        which, argv = "example", argv[1:]
    count = merge(TARGETS[which], [Path(a) for a in argv])
    print(f"{count} translations merged into {TARGETS[which].relative_to(ROOT)}")
    pybabel = Path(sys.executable).parent / "pybabel"  # this Python's Babel
    subprocess.run([str(ROOT / "scripts/translations.sh")], check=True,
                   env={**os.environ, "PYBABEL": str(pybabel)})


if __name__ == "__main__":
    main(sys.argv[1:])
