"""Schemathesis against a running chatd: every REST route of openapi.json, with a real bearer token.

Bounded and reproducible: a fixed seed and at most MAX_EXAMPLES cases per operation and phase
(coverage, fuzzing, stateful), one worker; every check schemathesis has (`--checks all`): no
5xx, every status and content type documented, every answer valid against its schema, schema-valid
requests accepted, invalid ones refused, a 405 with `Allow` for an undeclared method. The
server's own log must show no traceback and no 5xx.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261202
MAX_EXAMPLES = 25


def test_schemathesis_finds_nothing(live_chatd, tmp_path):
    base = live_chatd.server.base
    before = live_chatd.statuses()
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color", "run",
           f"{base}/api/v1/openapi.json", "--header", f"Authorization: Bearer {live_chatd.token}",
           "--checks", "all", "--mode", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
           "--workers", "1", "--request-timeout", "10", "--report", "junit", "--report-dir", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "No issues found" in out, out[-3000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", out)
    assert generated is not None and int(generated[1]) >= 300 and generated[1] == generated[2], out[-3000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested is not None and int(tested[1]) >= 13, out[-3000:]  # every operation but openapi.json itself
    answered = live_chatd.statuses() - before
    print(f"\nschemathesis: {generated[1]} cases, {sum(answered.values())} requests, "
          f"by status {dict(sorted(answered.items()))}")
    assert not [s for s in answered if s >= 500], answered
    assert {200, 201, 400, 401, 403, 404, 405} <= set(answered), answered  # it reached every kind of answer
    assert live_chatd.problems() == []
    live_chatd.assert_healthy()
