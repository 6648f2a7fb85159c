"""Bounded memory: a 50 MB message is streamed, never held whole (target < 32 MB)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dovecot import Dovecot

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_fifty_megabyte_message_in_bounded_memory(
    dovecot: Dovecot, new_user: tuple[str, str], tmp_path: Path
) -> None:
    user, pw = new_user
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    body = line * (50 * 1024 * 1024 // len(line))
    raw = (b"Subject: big\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + body)
    digest = hashlib.sha256(raw).hexdigest()
    dovecot.deliver(user, raw)
    del body, raw
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.memory_worker", "localhost",
         str(dovecot.pop3s_port), dovecot.ca_file, user, pw, str(out)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    [(_uidl, size, got)] = result["stored"]
    assert got == digest and size >= 50 * 1024 * 1024
    above_mib = (result["peak_kib"] - result["baseline_kib"]) / 1024
    print(f"50 MB message: peak {above_mib:.1f} MiB above baseline")
    assert above_mib < 32, f"peak {above_mib:.1f} MiB above baseline"
