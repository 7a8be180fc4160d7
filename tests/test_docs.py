"""Meta-tests of the documentation: docs/protocol.md covers the protocol the code speaks, and the
repository never links or refers outside itself."""
from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from chatd import errors, protocol

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"

#: Directories that are not the repository's own text (environments, builds, caches).
PRUNE = {".git", ".venv", "venv", "node_modules", "dist", "build", "__pycache__", ".mypy_cache", ".ruff_cache",
         ".pytest_cache", ".tox", ".hypothesis", "artifacts"}
TEXT_SUFFIXES = {".md", ".py", ".toml", ".cfg", ".ini", ".txt", ".js", ".mjs", ".html", ".css", ".sh", ".service",
                 ".conf", ".yml", ".yaml", ".json"}

#: Spelled in pieces so this file does not itself contain what it looks for.
OUTSIDE = ("." + "./" + "shared", "/work" + "/shared")


def protocol_doc() -> str:
    return PROTOCOL_DOC.read_text(encoding="utf-8")


def section(doc: str, number: int) -> str:
    """The text of `## N. …` up to the next `## ` heading."""
    m = re.search(rf"^## {number}\. .*?(?=^## )", doc, re.M | re.S)
    assert m is not None, f"docs/protocol.md has no section {number}"
    return m.group(0)


def table_keys(text: str) -> set[str]:
    """The backticked names or **bold** codes in the first column of every table row."""
    keys: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| "):
            continue
        first = line.split("|")[1]
        keys.update(re.findall(r"`([A-Za-z0-9_]+)`", first))
        keys.update(re.findall(r"\*\*(\d{4})\*\*", first))
    return keys


def client_frame_types() -> list[str]:
    return sorted(protocol.SCHEMAS)


def server_frame_types() -> list[str]:
    """Every frame type the server builds: bus events (`Event.frame`) and direct answers (`send_frame`)."""
    found: set[str] = set()
    for path in (ROOT / "chatd").rglob("*.py"):
        if "testing" in path.relative_to(ROOT / "chatd").parts:
            continue
        found.update(re.findall(r'(?:Event\.frame|send_frame)\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    return sorted(found)


def error_codes() -> list[str]:
    """The code of every ChatdError subclass (the one code → status mapping of chatd/errors.py)."""
    codes = {errors.ChatdError.code}
    todo = [errors.ChatdError]
    while todo:
        for sub in todo.pop().__subclasses__():
            codes.add(sub.code)
            todo.append(sub)
    return sorted(codes)


def close_codes() -> list[int]:
    """chatd's own close codes (`protocol.CLOSE_*`) and 1009, which Tornado sends for `max_frame_bytes`."""
    own = {value for name, value in inspect.getmembers(protocol)
           if name.startswith("CLOSE_") and isinstance(value, int)}
    return sorted(own | {1009})


def test_the_inventories_are_not_empty():
    # Guards the parametrized tests below against passing vacuously after a refactor.
    assert {"auth", "send_message", "join_conversation", "stop_generation"} <= set(client_frame_types())
    assert {"auth_success", "ack", "error", "joined", "stream_content", "message_added"} <= set(server_frame_types())
    assert {"INVALID_JSON", "FORBIDDEN", "RATE_LIMITED", "CANCELLED", "UNAUTHORIZED"} <= set(error_codes())
    assert {4001, 1008, 1001, 1009} <= set(close_codes())


@pytest.mark.parametrize("ftype", client_frame_types())
def test_client_frame_is_in_the_client_table(ftype):
    assert ftype in table_keys(section(protocol_doc(), 3)), f"§3 of docs/protocol.md has no row for `{ftype}`"


@pytest.mark.parametrize("ftype", server_frame_types())
def test_server_frame_is_in_the_server_table(ftype):
    assert ftype in table_keys(section(protocol_doc(), 4)), f"§4 of docs/protocol.md has no row for `{ftype}`"


@pytest.mark.parametrize("code", error_codes())
def test_error_code_is_in_the_error_table(code):
    assert code in table_keys(section(protocol_doc(), 5)), f"§5 of docs/protocol.md has no row for `{code}`"


@pytest.mark.parametrize("code", close_codes())
def test_close_code_is_in_the_close_table(code):
    assert str(code) in table_keys(section(protocol_doc(), 5)), f"§5 of docs/protocol.md has no row for **{code}**"


def repository_text_files() -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in PRUNE and not d.endswith(".egg-info")]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix in TEXT_SUFFIXES or name in ("Makefile", "LICENSE") or path.parent == ROOT / "conf":
                out.append(path)
    return out


def test_the_scan_sees_the_files_it_must():
    files = {p.relative_to(ROOT).as_posix() for p in repository_text_files()}
    assert {"README.md", "docs/protocol.md", "docs/operations.md", "conf/chatd.service", "chatd/protocol.py"} <= files


def test_nothing_refers_outside_the_repository():
    offenders = []
    for path in repository_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in OUTSIDE:
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, "files refer outside the repository:\n" + "\n".join(offenders)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "examples").glob("*/README.md"))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_stay_inside_the_repository_and_resolve(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.M | re.S)
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        url = urlparse(target)
        if url.scheme or target.startswith("mailto:"):
            continue  # a web address
        dest = (doc.parent / unquote(url.path)).resolve() if url.path else doc
        if ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif url.fragment and dest.suffix == ".md" and url.fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{url.fragment}")
    assert not problems, f"{doc.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_slugs_are_githubs():
    assert slug("3. Client → server") == "3-client--server"
    assert slug("6. Ordering, delivery and resume (ext)") == "6-ordering-delivery-and-resume-ext"
    assert slug("10. Additions of v1.1 (not yet implemented)") == "10-additions-of-v11-not-yet-implemented"
