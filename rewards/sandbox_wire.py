"""The wire between the reward process and the sandbox: length-prefixed JSON frames, and the value codec
that carries a program's results across as exact built-in types.

Both sides import it: the reward process as ``rewards.sandbox_wire``, the sandbox from the source the
bootstrap compiles (``rewards.sandbox_layers.WORKER_SOURCE``). Standard library only.
"""

from __future__ import annotations

import base64
import json
import math
import os
import struct

# --------------------------------------------------------------------------------------------------
# Framing: 4-byte big-endian length + UTF-8 JSON, used between the reward process and the zygote and
# between the solution and checker processes of an isolated assert run.
# --------------------------------------------------------------------------------------------------

MAX_FRAME = 64 << 20
HEADER = struct.Struct(">I")


def frame(obj: object) -> bytes:
    """Serialise one message for the wire."""
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    if len(data) > MAX_FRAME:
        raise ValueError(f"message of {len(data)} bytes exceeds the {MAX_FRAME}-byte frame limit")
    return HEADER.pack(len(data)) + data


def read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> object | None:
    """Read one message from a blocking descriptor; ``None`` at end of stream."""
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"incoming frame of {size} bytes exceeds the limit")
    body = read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd: int, obj: object) -> None:
    """Write one message to a blocking descriptor."""
    data = memoryview(frame(obj))
    while data:
        data = data[os.write(fd, data) :]


# --------------------------------------------------------------------------------------------------
# Value codec. Values cross the sandbox boundary as JSON with a few tagged forms. Encoding accepts only
# exact built-in types (subclasses are reduced to their built-in value through the base type's own
# methods, so overridden dunders never run) and decoding builds exact built-in types, which is what
# makes comparisons on the trusted side immune to objects with rigged ``__eq__``.
# --------------------------------------------------------------------------------------------------

_TAG = "__t"
_MAX_DEPTH = 200
_MAX_ITEMS = 1_000_000
_BIG_INT_BITS = 8000  # beyond this, ints travel as hex (decimal conversion is capped by CPython)
_MAX_HEX_DIGITS = 100_000  # the largest int accepted when decoding (400k bits)


class TransferError(TypeError):
    """A value that cannot cross the sandbox boundary."""


def encode_value(value: object, _depth: int = 0) -> object:
    """A JSON-compatible form of ``value`` built from exact built-in types only."""
    if _depth > _MAX_DEPTH:
        raise TransferError("value nested too deeply (or cyclic)")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return {_TAG: "int", "v": hex(value)} if value.bit_length() > _BIG_INT_BITS else value
    if t is float:
        return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
    if t is list:
        return [encode_value(v, _depth + 1) for v in value]
    if t is tuple:
        return {_TAG: "tuple", "v": [encode_value(v, _depth + 1) for v in value]}
    if t is dict:
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: encode_value(v, _depth + 1) for k, v in value.items()}
        return {
            _TAG: "dict",
            "v": [[encode_value(k, _depth + 1), encode_value(v, _depth + 1)] for k, v in value.items()],
        }
    if t is set or t is frozenset:
        return {_TAG: t.__name__, "v": [encode_value(v, _depth + 1) for v in value]}
    if t is bytes or t is bytearray:
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode()}
    if t is complex:
        return {_TAG: "complex", "v": [encode_value(value.real), encode_value(value.imag)]}
    if t is range:  # materialised like an iterator, so the receiving side never expands a huge range
        if len(value) > _MAX_ITEMS:
            raise TransferError("range too long to transfer")
        return list(value)
    # Subclasses of built-ins: take the built-in value through the base type's own slot.
    for base, convert in _BASE_CONVERTERS:
        if isinstance(value, base):
            return encode_value(convert(value), _depth + 1)
    # Iterators and generators are materialised (a test may well call list() on them), within limits.
    if hasattr(t, "__next__") and hasattr(t, "__iter__"):
        items = []
        for item in value:  # type: ignore[attr-defined]
            items.append(encode_value(item, _depth + 1))
            if len(items) > _MAX_ITEMS:
                raise TransferError("iterator yields too many items")
        return {_TAG: "iter", "v": items}
    # numpy scalars and arrays: their plain-Python form (whatever it returns is re-checked).
    if t.__module__.split(".")[0] == "numpy" and hasattr(value, "tolist"):
        return encode_value(value.tolist(), _depth + 1)
    raise TransferError(f"cannot transfer a value of type {t.__module__}.{t.__qualname__}")


_BASE_CONVERTERS = (
    (bool, bool.__bool__),
    (int, int.__int__),
    (float, float.__float__),
    (str, str.__str__),
    (bytes, bytes),
    (list, lambda v: list(list.__iter__(v))),
    (tuple, lambda v: tuple(tuple.__iter__(v))),
    (dict, lambda v: dict(dict.items(v))),
    (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
    (set, lambda v: set(set.__iter__(v))),
)


def decode_value(data: object, _depth: int = 0) -> object:
    """The Python value of an encoded form; raises ``TransferError`` on anything malformed."""
    if _depth > _MAX_DEPTH:
        raise TransferError("encoded value nested too deeply")
    t = type(data)
    if data is None or t is bool or t is str or t is int or t is float:
        return data
    if t is list:
        return [decode_value(v, _depth + 1) for v in data]
    if t is not dict:
        raise TransferError(f"malformed encoded value of type {t.__name__}")
    tag = data.get(_TAG)
    if tag is None:
        return {k: decode_value(v, _depth + 1) for k, v in data.items()}
    v = data.get("v")
    try:
        if tag == "int":
            if len(v) > _MAX_HEX_DIGITS:
                raise TransferError("integer too large")
            return int(v, 16)
        if tag == "float":
            return float(v)
        if tag == "tuple":
            return tuple(decode_value(x, _depth + 1) for x in v)
        if tag == "iter":
            return iter([decode_value(x, _depth + 1) for x in v])
        if tag == "dict":
            return {decode_value(k, _depth + 1): decode_value(x, _depth + 1) for k, x in v}
        if tag == "set":
            return {decode_value(x, _depth + 1) for x in v}
        if tag == "frozenset":
            return frozenset(decode_value(x, _depth + 1) for x in v)
        if tag == "bytes":
            return base64.b64decode(v)
        if tag == "complex":
            return complex(decode_value(v[0], _depth + 1), decode_value(v[1], _depth + 1))
    except TransferError:
        raise
    except Exception as exc:  # malformed payload from an untrusted peer
        raise TransferError(f"malformed encoded {tag}: {exc}") from None
    raise TransferError(f"unknown encoded tag {tag!r}")
