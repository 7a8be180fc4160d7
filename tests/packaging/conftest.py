"""The packaging tests drive Chromium with the browser tests' fixtures.

No __init__.py here: a package named `packaging` would shadow the PyPI `packaging` library.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where the `browser` package is

from browser.conftest import browser, new_tab  # noqa: E402, F401 (fixtures)
