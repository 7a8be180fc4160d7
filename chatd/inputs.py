"""Limits every decoder of client data applies: JSON nesting depth, 64-bit integers, valid Unicode.

Meant for WebSocket frames (`chatd.protocol`) and REST bodies alike, so that no handler ever
sees a value its store, its encoder or the recursion limit cannot take:

- JSON nested deeper than `MAX_DEPTH` is refused before it is parsed (a parser recursing a
  thousand levels raises `RecursionError`, not a decode error) → `INVALID_JSON`;
- an integer outside the signed 64-bit range (every id, cursor and count chatd stores is one)
  → `INVALID_MESSAGE` naming the field;
- a string or key with a lone UTF-16 surrogate (`"\\ud800"` is legal JSON text, but no UTF-8
  encoder, database or JSON encoder takes it) → `INVALID_MESSAGE` naming the field.

`loads` does all three; `parse` and `check_value` are the two halves, for a decoder that must
run other checks in between (the frame decoder checks `type` first).
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

import msgspec

from chatd.errors import InvalidJSON, InvalidMessage

#: Containers (objects and arrays) a JSON document may nest; no frame or body needs more than a few.
MAX_DEPTH = 64
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_decoder = msgspec.json.Decoder()
# A JSON string (escapes included), blanked out before brackets are counted. The closing quote is
# optional so that every match attempt succeeds at once: text with an unterminated string is still
# scanned in linear time (it is not JSON anyway, and the parser says so).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def in_int64(value: int) -> bool:
    """Whether an integer fits a signed 64-bit column."""
    return INT64_MIN <= value <= INT64_MAX


def valid_unicode(text: str) -> bool:
    """Whether a string can be encoded as UTF-8 (it holds no lone surrogate)."""
    return text.isascii() or _SURROGATE.search(text) is None


def check_depth(text: str | bytes, limit: int = MAX_DEPTH) -> None:
    """INVALID_JSON if the JSON text nests more than `limit` containers (checked without parsing)."""
    s = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray, memoryview)) else text
    if s.count("[") + s.count("{") <= limit:  # the common case: too few brackets to be too deep
        return
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", s))
    if max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit:
        raise InvalidJSON(f"JSON is nested more than {limit} levels deep")


def parse(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """Parse JSON text no deeper than `limit`; INVALID_JSON if it is not JSON.

    Lone surrogate escapes are legal JSON that msgspec refuses: such text is parsed by the
    standard library instead, so `check_value` can name the field rather than call the whole
    document malformed.
    """
    check_depth(text, limit)
    try:
        return _decoder.decode(text)
    except (msgspec.DecodeError, RecursionError) as e:
        error: Exception = e
    except UnicodeError as e:  # a str that already holds a lone surrogate
        error = e
    if isinstance(error, UnicodeError) or _SURROGATE_ESCAPE.search(
            text if isinstance(text, str) else text.decode("utf-8", "replace")):
        try:
            return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError):
            pass
    raise InvalidJSON(f"Not valid JSON: {error}") from error


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (the standard library accepts them; msgspec does not)."""
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refused when it overflows to infinity (as msgspec refuses it)."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def check_value(value: Any, path: str = "", limit: int = MAX_DEPTH) -> None:
    """INVALID_MESSAGE naming the field if an integer is outside 64 bits or a string is not valid Unicode.

    `path` names `value` in messages (`data` → `data.conversation_id`, `data.member_ids[0]`);
    an empty path is the document itself. Containers deeper than `limit` are INVALID_JSON.
    """
    _check(value, path, limit)


def _check(value: Any, path: str, left: int) -> None:
    if isinstance(value, str):
        if not valid_unicode(value):
            raise InvalidMessage(f"Field `{_name(path)}` is not valid Unicode (it holds a lone surrogate)")
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if not in_int64(value):
            raise InvalidMessage(f"Field `{_name(path)}` is an integer outside the 64-bit range")
    elif isinstance(value, dict):
        if left <= 0:
            raise InvalidJSON(f"JSON is nested more than {MAX_DEPTH} levels deep")
        for key, item in value.items():
            if not isinstance(key, str) or not valid_unicode(key):
                raise InvalidMessage(f"A key in `{_name(path)}` is not valid Unicode (it holds a lone surrogate)")
            _check(item, f"{path}.{key}" if path else key, left - 1)
    elif isinstance(value, list):
        if left <= 0:
            raise InvalidJSON(f"JSON is nested more than {MAX_DEPTH} levels deep")
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", left - 1)


def _name(path: str) -> str:
    """A field path fit for an error message: `$` for the document, long keys cut short."""
    if not path:
        return "$"
    return path if len(path) <= 100 else path[:97] + "..."


def loads(text: str | bytes, limit: int = MAX_DEPTH) -> Any:
    """Parse JSON text and check every value: `parse`, then `check_value`."""
    value = parse(text, limit)
    check_value(value, "", limit)
    return value
