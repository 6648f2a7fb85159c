"""After a plain ``pip install`` (no source tree around), ``flask popaccounts db upgrade``
brings an empty database to exactly the models' schema: the migrations ship as package data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.storage.test_migrations import schema_diff

REPO = Path(__file__).resolve().parents[2]

HOST = '''
import os
from flask import Flask
from flask_popaccounts import PopAccounts

app = Flask(__name__)
app.config.update(SECRET_KEY="x", TESTING=True, POPACCOUNTS_DATABASE_URI=os.environ["DB_URL"])
PopAccounts(app)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(REPO)], check=True, timeout=600)
    return target


def run_upgrade(installed: Path, workdir: Path, url: str) -> str:
    (workdir / "host.py").write_text(HOST)
    env = {**os.environ, "PYTHONPATH": str(installed), "DB_URL": url}
    env.pop("FLASK_APP", None)
    probe = "import flask_popaccounts as p; print(p.__file__)"
    where = subprocess.run([sys.executable, "-c", probe],
                           cwd=workdir, env=env, check=True, capture_output=True, text=True)
    assert where.stdout.startswith(str(installed)), where.stdout  # not the source tree
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "host", "popaccounts", "db",
                          "upgrade"], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_installed_upgrade_sqlite(installed, tmp_path):
    url = f"sqlite:///{tmp_path / 'host.db'}"
    assert "0005_fetch_faults" in run_upgrade(installed, tmp_path, url)
    engine = create_engine(url)
    assert schema_diff(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_installed_upgrade_postgresql(installed, tmp_path, postgres):
    url = postgres.create_database()
    run_upgrade(installed, tmp_path, url)
    engine = create_engine(url)
    assert schema_diff(engine) == []
    engine.dispose()
