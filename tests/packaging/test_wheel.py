"""The wheel is the product: built from the sdist, installed into a fresh venv outside the checkout,
`chatd serve` in an empty directory serves the page that Chromium drives.

Slow (a build, two venvs, a browser): marked `slow`. The build needs node and npm (the page is
built from static/package-lock.json); pip installs the dependencies from the configured index.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.helpers import Tab

from chatd.testing.util import free_port, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
OPTIONAL = ("openai", "anthropic", "tiktoken", "redis", "asyncpg", "pymongo", "pytest_asyncio")


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without anything that points into the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHATD_", "PYTHON", "VIRTUAL_ENV", "TIKTOKEN", "OPENAI_", "ANTHROPIC_"))}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"), PYTHONUNBUFFERED="1")
    return env


def run(*cmd: str | Path, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def du(path: Path) -> int:
    """Bytes under a directory."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist (so the sdist must suffice)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, REPO)
    wheel = next(out.glob("chatd-*-py3-none-any.whl"))
    sdist = next(out.glob("chatd-*.tar.gz"))
    return {"wheel": wheel, "sdist": sdist}


def make_venv(root: Path, *requirements: str) -> Path:
    """A fresh venv (no system site-packages) with the requirements installed; its bin directory."""
    run(sys.executable, "-m", "venv", root)
    if requirements:
        run(root / "bin" / "python", "-m", "pip", "install", "--quiet", *requirements, env=clean_env(root))
    return root / "bin"


@pytest.fixture(scope="module")
def core_venv(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel installed without extras, in a venv outside the checkout."""
    return make_venv(tmp_path_factory.mktemp("venv-core") / "venv", str(dist["wheel"]))


@pytest.fixture
def served(core_venv: Path, tmp_path: Path) -> Iterator[str]:
    """`chatd serve` from the core venv, started in an empty directory; its base URL."""
    empty = tmp_path / "empty"
    empty.mkdir()
    port = free_port()
    log = open(tmp_path / "chatd.log", "wb")
    proc = subprocess.Popen([core_venv / "chatd", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=empty, env=clean_env(tmp_path / "home"), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "chatd.log").read_text()
            try:
                with urllib.request.urlopen(base + "healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "chatd did not answer /healthz"
                time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    assert list(empty.iterdir()) == []  # nothing written where it was started: data went to XDG_DATA_HOME


def test_sdist_holds_the_page_sources_and_the_wheel_holds_the_built_page(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("static/package-lock.json", "static/package.json", "static/build.mjs", "static/src/main.js",
                   "static/src/index.html", "scripts/setup_frontend.sh", "pyproject.toml", "setup.py",
                   "conf/chatd.service", "plugins/chatd_demo/__init__.py"):
        assert needed in names, needed
    assert not any(n.startswith(("static/node_modules", "static/dist")) for n in names)
    with zipfile.ZipFile(dist["wheel"]) as whl:
        wheel_names = set(whl.namelist())
    assert {"chatd/web/dist/index.html", "chatd/web/dist/app.js", "chatd/web/dist/app.css"} <= wheel_names
    assert not any(n.startswith(("static/", "tests/")) for n in wheel_names)


def test_core_install_has_no_optional_packages(core_venv):
    code = f"import importlib.util as u; print(' '.join(m for m in {OPTIONAL!r} if u.find_spec(m)))"
    present = run(core_venv / "python", "-c", code).stdout.split()
    assert present == [], f"the core install pulled in {present}"


def test_installed_wheel_serves_the_page_that_chromium_drives(served, new_tab):
    with urllib.request.urlopen(served) as r:
        assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
        html = r.read().decode()
    tab: Tab = new_tab(served).open()
    tab.register(unique_name("wheel"))
    tab.send("hello from the wheel")
    reply = tab.wait_reply_done(1)
    assert reply.get_attribute("data-status") == "complete"
    assert tab.reply_text(1).strip()
    assert not tab.errors and not tab.csp_violations(), (tab.errors, tab.csp_violations())
    # The assets the page names are content-addressed and cached for a year; unversioned they are not.
    import re

    assets = re.findall(r'(?:src|href)="(app\.(?:js|css)\?v=[0-9a-f]+)"', html)
    assert len(assets) == 2, html
    for asset in assets:
        with urllib.request.urlopen(served + asset) as r:
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", asset
        with urllib.request.urlopen(served + asset.split("?")[0]) as r:
            assert r.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("config, env, line", [
    ('[providers.openai]\n[[assistants]]\nid = "gpt"\nname = "GPT"\nprovider = "openai"\nmodel = "gpt-4o"\n', {},
     "provider 'openai' (type 'openai') is not installed: pip install 'chatd[openai]'"),
    ('[providers.claude]\ntype = "anthropic"\n[[assistants]]\nid = "c"\nname = "C"\nprovider = "claude"\n'
     'model = "claude-sonnet-4-5"\n', {}, "pip install 'chatd[anthropic]'"),
    ("", {"CHATD_BUS": "redis"}, "bus = \"redis\" needs the Python package 'redis', which is not installed: "
                                  "pip install 'chatd[redis]'"),
    ("", {"CHATD_STORE": "postgres", "CHATD_STORE_URL": "postgresql://postgres@127.0.0.1/chatd"},
     "pip install 'chatd[postgres]'"),
])
def test_a_configured_backend_without_its_extra_stops_start_up_with_the_pip_line(core_venv, tmp_path, config,
                                                                                  env, line):
    cfg = tmp_path / "chatd.toml"
    cfg.write_text(config)
    start = time.monotonic()
    proc = subprocess.run([core_venv / "chatd", "serve", "--config", cfg, "--port", "0"], capture_output=True,
                          text=True, timeout=30, cwd=tmp_path, env={**clean_env(tmp_path), **env})
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"chatd: error: {proc.stderr.strip()[len('chatd: error: '):]}"]
    assert line in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 10


def test_an_api_key_without_its_extra_warns_and_the_demo_still_serves(core_venv, tmp_path):
    proc = subprocess.run([core_venv / "chatd", "check-config"], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path, env={**clean_env(tmp_path), "OPENAI_API_KEY": "sk-test"})
    assert proc.returncode == 0, proc.stderr
    assert ("OPENAI_API_KEY is set, but the openai provider is not installed (pip install 'chatd[openai]')"
            in proc.stderr)
    assert "assistants: demo (demo)" in proc.stderr


def test_pytest_works_where_chatd_is_installed_without_pytest_asyncio(dist, tmp_path):
    bin_dir = make_venv(tmp_path / "venv", str(dist["wheel"]), "pytest")
    tests = tmp_path / "t"
    tests.mkdir()
    (tests / "test_x.py").write_text("def test_plain():\n    assert True\n\n"
                                     "def test_wants_a_server(chatd):\n    raise AssertionError('not reached')\n")
    proc = subprocess.run([bin_dir / "python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", tests],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout and "pytest-asyncio" in proc.stdout, proc.stdout
