"""The web page's model (static/src/model) under Node's own test runner: `node --test static/test/`."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_frontend_model_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the web page's unit tests need Node.js >= 18 "
                    "(Debian: apt-get install nodejs); run them with `node --test static/test/`")
    proc = subprocess.run([node, "--test", "static/test/"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    output = f"{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, f"node --test static/test/ exited with {proc.returncode}:\n{output}"
    assert "# fail 0" in proc.stdout, output
