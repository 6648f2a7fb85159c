#!/bin/sh
# Extract every translatable string, merge it into each language's catalogue, compile.
#   scripts/translations.sh            the extension (domain popaccounts) and the example app
# (tests/test_translations.py fails on any string without its Arabic translation)
# The compiled .mo files are committed: they ship in the wheel (setup.cfg package_data).
set -eu
cd "$(dirname "$0")/.."
PYBABEL="${PYBABEL:-.venv/bin/pybabel}"
KEYWORDS="-k lazy_gettext -k lazy_ngettext:1,2 -k N_"

catalogue() {  # cfg  pot  dir  domain  (the .pot is a temporary file)
    "$PYBABEL" -q extract -F "$1" $KEYWORDS --no-location --sort-output \
        --project=flask-popaccounts --copyright-holder="flask-popaccounts" -o "$2" .
    # a fixed creation date: the catalogues change only when their messages do
    sed -i 's/^"POT-Creation-Date: .*/"POT-Creation-Date: 2026-01-01 00:00+0000\\n"/' "$2"
    for po in "$3"/*/LC_MESSAGES/"$4".po; do
        [ -e "$po" ] || continue
        "$PYBABEL" -q update -D "$4" -i "$2" -d "$3" --no-wrap --ignore-obsolete \
            --no-fuzzy-matching -l "$(basename "$(dirname "$(dirname "$po")")")"
    done
    "$PYBABEL" -q compile -D "$4" -d "$3" --statistics
}

TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
catalogue babel.cfg "$TMP/popaccounts.pot" \
    flask_popaccounts/translations popaccounts
catalogue babel-example.cfg "$TMP/messages.pot" \
    example_app/translations messages
