"""Packaging for chatd: the daemon package, the first-party plugins in plugins/, and the built web page.

Building a wheel (`python -m build`, `pip install .`, `pip wheel .`) also builds the page from
`static/package-lock.json` (`scripts/setup_frontend.sh`: npm ci + `node build.mjs`) and puts
`static/dist/` inside the package as `chatd/web/dist/`, where the server finds it through
`importlib.resources`. An editable install (`pip install -e .`, what `make setup` does) skips
that: a checkout serves `static/dist/` directly (see chatd/web/static.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_DIST = os.path.join(HERE, "static", "dist")

# First-party plugins live in plugins/ and are registered through the same "chatd"
# entry-point group a third-party plugin would use; chatd never imports them by name.
PLUGIN_PACKAGES = ["chatd_demo", "chatd_openai", "chatd_anthropic", "chatd_filters"]

# Optional back-ends, each imported only when configured (chatd/extras.py names the extra to install).
EXTRAS = {
    "openai": ["openai>=1.40", "tiktoken>=0.7"],  # tiktoken counts OpenAI models' tokens exactly
    "anthropic": ["anthropic>=0.40"],
    # redis.asyncio: the shared bus, limiter and in-flight replies of several processes.
    "redis": ["redis>=5.0"],
    # asyncpg: the PostgreSQL store's driver (fast, well kept, with its own pool).
    "postgres": ["asyncpg>=0.30"],
    # PyMongo's async API (AsyncMongoClient); motor is end of life.
    "mongodb": ["pymongo>=4.13"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})
EXTRAS["test"] = EXTRAS["all"] + [
    "nx-27017>=0.8",  # a MongoDB-wire-compatible server for the MongoDB store's tests (no mongod here)
    "pytest>=8",
    "pytest-asyncio>=0.24",
    "hypothesis>=6",
    # tests/rest runs it against a live chatd with openapi.json; the test reads its OpenAPI 3.1 meta-schema.
    "schemathesis>=4.32,<5",
    "psutil>=5.9",
    "playwright>=1.45",
    "build>=1.2",  # tests/packaging builds the wheel and the sdist
    "ruff==0.17.6",  # pinned: a newer ruff may add findings to the selected rule sets
    "mypy==2.4.1",
]


class BuildPyWithPage(build_py):
    """build_py that also builds the web page and copies it into the package as chatd/web/dist/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout serves static/dist itself
        self._build_page()
        target = os.path.join(self.build_lib, "chatd", "web", "dist")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(PAGE_DIST, target, ignore=shutil.ignore_patterns(".*"))

    def _build_page(self) -> None:
        have_sources = os.path.isfile(os.path.join(HERE, "static", "package-lock.json"))
        have_node = shutil.which("node") and shutil.which("npm")
        if have_sources and have_node:
            subprocess.run(["bash", os.path.join(HERE, "scripts", "setup_frontend.sh")], check=True)
        elif not os.path.isfile(os.path.join(PAGE_DIST, "index.html")):
            raise SystemExit("chatd: building the wheel needs the web page: install Node.js >= 18 and npm "
                             "(Debian: apt-get install nodejs npm), or build static/dist first")
        else:
            print("chatd: node/npm not found; packaging the page already built in static/dist")


setup(
    name="chatd",
    version="0.1.0",
    description="Self-hosted real-time AI chat daemon",
    python_requires=">=3.11",
    packages=find_packages(include=["chatd", "chatd.*"]) + PLUGIN_PACKAGES,
    package_dir={name: f"plugins/{name}" for name in PLUGIN_PACKAGES},
    package_data={"chatd": ["py.typed"]},
    cmdclass={"build_py": BuildPyWithPage},
    # What the embedded defaults use (SQLite store, in-process bus and limiter, demo assistant).
    install_requires=[
        "tornado>=6.4",
        "pluggy>=1.5",
        "PyJWT[crypto]>=2.13",
        "argon2-cffi>=23.1",
        "aiosqlite>=0.20",
        "msgspec>=0.18",
        "prometheus-client>=0.20",
    ],
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["chatd = chatd.cli:main"],
        "pytest11": ["chatd = chatd.pytest_plugin"],
        "chatd": ["demo = chatd_demo", "openai = chatd_openai", "anthropic = chatd_anthropic",
                  "filters = chatd_filters"],
    },
)
