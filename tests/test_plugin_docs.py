"""Meta-test: every hookspec is documented in docs/plugins.md and exercised by some test."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from chatd import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"


def hook_names() -> list[str]:
    return sorted(name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
                  if hasattr(obj, "chatd_spec"))


def test_there_are_hooks():
    assert {"register_providers", "register_filters", "default_assistants"} <= set(hook_names())


@pytest.mark.parametrize("name", hook_names())
def test_hook_is_documented(name):
    doc = DOC.read_text(encoding="utf-8")
    section = re.search(rf"^### {name}\n(.*?)(?=^##)", doc, re.M | re.S)
    assert section is not None, f"docs/plugins.md has no '### {name}' section"
    body = section.group(1)
    assert f"def {name}(" in body, f"the {name} section shows no signature"
    assert "firstresult" in body and "When it fires" in body, f"the {name} section lacks when/firstresult"


@pytest.mark.parametrize("name", hook_names())
def test_hook_has_a_test(name):
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name]
    assert any(name in p.read_text(encoding="utf-8") for p in tests), f"no test names the {name} hook"


@pytest.mark.parametrize("name", hook_names())
def test_hookspec_docstring_says_when_and_firstresult(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert "Fires" in doc and "firstresult" in doc
