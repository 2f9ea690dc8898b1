"""`make install` is idempotent and quiet: run again on an installed venv, it changes
nothing and says so in one line (CI and every `make up` run it first)."""

from __future__ import annotations

import os
import subprocess

import pytest

from flows.core.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit


def test_make_install_on_an_installed_venv_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "install"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["install: .venv matches requirements.lock"], done.stdout
    assert done.stderr == ""
    assert not (PROJECT_ROOT / "cryptolytics.egg-info").exists()  # it would shadow the package
