"""Logged steps as the text `swiftdeck metrics` writes, made a block of rows at a time from the columns (no dict
and no Python call per row or per value): JSON objects as orjson writes them, and CSV cells as the csv module
writes them (`repr` of a float).

The numbers of a block are written by one `orjson.dumps` of them all, row after row (a flat list filled a column
at a time by slice assignment), and cut at the commas; the rows are then one `bytes % tuple` of a template that
holds the keys, repeated once per row. orjson and `repr` both give the shortest text that reads back as the same float, and differ
only in how they write exponents (orjson `3e-6`, `0.00001`; repr `3e-06`, `1e-05`): CSV cells get repr's form by
three regular-expression passes over the (rare) blocks that have an exponent.
"""
from __future__ import annotations

import functools
import re
from array import array

import orjson

# orjson -> repr: 0.0000123 -> 1.23e-05 (orjson writes 1e-5 <= |x| < 1e-4 without an exponent, repr with one)
_E5_DIGITS = re.compile(rb"(?<![\d.])0\.0000([1-9])(\d+)")
_E5_ONE = re.compile(rb"(?<![\d.])0\.0000([1-9])(?!\d)")
_E_ONE_DIGIT = re.compile(rb"e-(\d)(?!\d)")  # 3e-6 -> 3e-06


def _row_major(columns: list[array]) -> list:
    """The values of equally long columns, row after row."""
    width = len(columns)
    flat = [None] * (width * len(columns[0]))
    for i, col in enumerate(columns):
        flat[i::width] = col.tolist()
    return flat


def json_tokens(columns: list[array]) -> tuple[bytes, ...]:
    """orjson's text of each value (finite floats or ints) of equally long columns, row after row."""
    if not len(columns[0]):
        return ()
    return tuple(orjson.dumps(_row_major(columns))[1:-1].split(b","))


def repr_tokens(columns: list[array]) -> tuple[bytes, ...]:
    """`repr` of each value (finite floats or ints) of equally long columns, row after row: what the csv module
    writes."""
    if not len(columns[0]):
        return ()
    text = orjson.dumps(_row_major(columns))
    if b"e" in text or b"0.0000" in text:
        text = _E_ONE_DIGIT.sub(rb"e-0\1", _E5_ONE.sub(rb"\1e-05", _E5_DIGITS.sub(rb"\1.\2e-05", text)))
    return tuple(text[1:-1].split(b","))


@functools.lru_cache(maxsize=64)
def _json_template(keys: tuple[str, ...]) -> bytes:
    parts = [b'{"step":%b'] + [b"," + orjson.dumps(k).replace(b"%", b"%%") + b":%b" for k in keys]
    return b"".join(parts) + b"}"


def json_rows(steps: array, cols: dict[str, array], sep: bytes) -> bytes:
    """`{"step":N,"key":value,...}` for each row (keys in `cols`' order, no key named "step"; every value finite),
    joined by `sep`: the bytes orjson.dumps gives for each row's dict."""
    if not len(steps):
        return b""
    template = (_json_template(tuple(cols)) + sep) * len(steps)
    return template[:len(template) - len(sep)] % json_tokens([steps, *cols.values()])


@functools.lru_cache(maxsize=64)
def _csv_template(present: tuple[bool, ...]) -> bytes:
    return b",".join(b"%b" if p else b"" for p in present) + b"\n"


def csv_rows(steps: array, cols: dict[str, array], keys: list[str]) -> bytes:
    """A CSV line per row: the step, then a cell per key of `keys[1:]` (empty where `cols` has no such column; every
    value finite): the bytes csv.writer writes for these rows."""
    present = (True, *(k in cols for k in keys[1:]))
    return (_csv_template(present) * len(steps)) % repr_tokens([steps, *(cols[k] for k in keys[1:] if k in cols)])
