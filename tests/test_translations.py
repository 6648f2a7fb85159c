"""The catalogues are complete and the compiled ones in the package are current.

For the extension (domain ``popaccounts``) and for the example webmail (``messages``):
``pybabel extract`` over the sources (what ``scripts/translations.sh`` runs) finds no
message that the Arabic catalogue lacks, leaves empty or marks fuzzy; every plural
message has Arabic's six forms; and the committed ``.mo`` is exactly what compiling the
``.po`` gives (so the wheel ships what the translators wrote).
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]

CATALOGUES = [
    ("babel.cfg", ROOT / "flask_popaccounts/translations", "popaccounts"),
    ("babel-example.cfg", ROOT / "example_app/translations", "messages"),
]


def _extract(cfg: str, out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", cfg,
         "-k", "lazy_gettext", "-k", "lazy_ngettext:1,2", "-k", "N_", "--no-location",
         "-o", str(out), "."],
        cwd=ROOT, check=True, capture_output=True)


@pytest.mark.parametrize(("cfg", "directory", "domain"), CATALOGUES,
                         ids=[c[2] for c in CATALOGUES])
def test_every_extracted_message_has_its_arabic_translation(tmp_path, cfg, directory, domain):
    pot = tmp_path / "all.pot"
    _extract(cfg, pot)
    with pot.open("rb") as f:
        template = read_po(f)
    po_path = directory / "ar" / "LC_MESSAGES" / f"{domain}.po"
    with po_path.open("rb") as f:
        arabic = read_po(f, locale="ar")
    assert arabic.num_plurals == 6

    missing, empty, fuzzy, forms = [], [], [], []
    for message in template:
        if not message.id:
            continue
        found = arabic.get(message.id)
        if found is None:
            missing.append(message.id)
            continue
        strings = found.string if isinstance(found.string, (list, tuple)) else [found.string]
        if not all(strings):
            empty.append(message.id)
        if found.fuzzy:
            fuzzy.append(message.id)
        if isinstance(message.id, (list, tuple)) and len(strings) != 6:
            forms.append(message.id)
    assert missing == [], f"{len(missing)} messages not in the Arabic catalogue"
    assert empty == [], f"{len(empty)} messages without an Arabic translation"
    assert fuzzy == [], "fuzzy translations (check and clear the flag)"
    assert forms == [], "plural messages without the six Arabic forms"
    assert len(template) > 0


@pytest.mark.parametrize(("cfg", "directory", "domain"), CATALOGUES,
                         ids=[c[2] for c in CATALOGUES])
def test_the_compiled_catalogue_is_the_current_one(cfg, directory, domain):
    po_path = directory / "ar" / "LC_MESSAGES" / f"{domain}.po"
    with po_path.open("rb") as f:
        catalogue = read_po(f, locale="ar")
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    mo = po_path.with_suffix(".mo").read_bytes()
    assert mo == compiled.getvalue(), "run scripts/translations.sh and commit the .mo"


def test_the_wheel_ships_the_compiled_catalogues():
    setup = (ROOT / "setup.cfg").read_text()
    assert "translations/*/LC_MESSAGES/*.mo" in setup
    assert (ROOT / "flask_popaccounts/translations/ar/LC_MESSAGES/popaccounts.mo").is_file()
