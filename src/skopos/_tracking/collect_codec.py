"""The official client script's wire format: a ``/collect`` body → the message object in it.

``skopos.min.js`` 1.3 (dashboard 0.42 and later) posts ``{"_d": "<base64>", "_v": 1}``.
``_d`` is the JSON message, obfuscated against content blockers (not secured): each UTF-16
code unit of the JSON text XORed with the code unit of :data:`OBFUSCATION_KEY` at the same
position modulo the key's length, then UTF-8, then base64. A plain JSON message (no ``_d``)
is accepted as it is. :func:`decode_body` undoes this in the worker and never raises; the
fields of the message are checked by :mod:`skopos._tracking.collect`.

Decisions where the protocol leaves room:

- The outer body is held to the rules of our own ``/api/event`` bodies first (at most
  16 KiB, UTF-8, JSON nested at most 20 levels, an object), so no decoding starts on an
  oversized body; ``_d`` handed over in an already parsed mapping is held to 16 KiB too.
- ``_v`` must be the integer 1. A missing ``_v`` is ``bad_encoding`` (no known client sends
  ``_d`` without it); any other value is ``unsupported_version``, so that a future script
  with another key shows up in the counters instead of as garbage JSON.
- Base64 is strict: standard alphabet, padding required, no whitespace (``btoa`` output).
- The bytes must be strict UTF-8: surrogates encoded in UTF-8 (CESU-8), which neither
  ``TextEncoder`` nor ``encodeURIComponent`` ever produce, are ``invalid_utf8``. The key
  is ASCII, so the XOR changes only the low 7 bits of a code unit: surrogates stay
  surrogates of the same half and every other unit stays outside the surrogate range, so
  well-formed text stays well-formed. Lone surrogates can still arrive as ``\\udXXX``
  escapes in the JSON (``JSON.stringify`` writes them so); the field rules remove them from
  text and reject them in URLs and custom data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import TypeVar

from skopos._tracking.collect_message import CollectRejection, CollectRejectionReason
from skopos._tracking.payload import MAX_RAW_BYTES, Rejection, load_json_object

__all__ = ["ENCODING_VERSION", "OBFUSCATION_KEY", "decode_body", "xor_code_units"]

OBFUSCATION_KEY = "sk0p0s_4n4lyt1cs_0bf_k3y_2026"
ENCODING_VERSION = 1

_T = TypeVar("_T")
_KEY_BYTES = OBFUSCATION_KEY.encode("utf-16-le")
# A body of MAX_RAW_BYTES holds at most 3/4 as many bytes in _d, and UTF-8 never has fewer
# bytes than UTF-16 code units: one keystream of MAX_RAW_BYTES units covers every body.
_KEYSTREAM = (_KEY_BYTES * (MAX_RAW_BYTES // len(OBFUSCATION_KEY) + 1))[: 2 * MAX_RAW_BYTES]


class _Reject(Exception):
    """Raised inside the decoder, turned into a CollectRejection at the top."""

    def __init__(self, reason: CollectRejectionReason, detail: str) -> None:
        super().__init__(reason)
        self.reason: CollectRejectionReason = reason
        self.detail = detail


def decode_body(raw: object) -> Mapping[object, object] | CollectRejection:
    """The message object in a ``/collect`` body (``bytes``, ``str`` or a parsed mapping).

    Never raises; the message's fields are not checked here.

    Example::

        >>> body = b'{"_d": "CElECUAWfQ5MURQQABNPUTtFEERlWgAE", "_v": 1}'
        >>> decode_body(body)
        {'type': 'exit', 'dur': 13}
        >>> decode_body(b'{"type": "exit", "dur": 13}')
        {'type': 'exit', 'dur': 13}
    """
    return _guarded(lambda: _decode(raw))


def xor_code_units(text: str) -> str:
    """``text`` with each UTF-16 code unit XORed with :data:`OBFUSCATION_KEY`'s, cyclically.

    Its own inverse. A character outside the BMP is two code units, each XORed on its own,
    as JavaScript does; lone surrogates pass through (as surrogates).

    Example::

        >>> xor_code_units("{}")
        '\\x08\\x16'
        >>> xor_code_units(xor_code_units("naïve 🙂")) == "naïve 🙂"
        True
    """
    data = text.encode("utf-16-le", "surrogatepass")
    size = len(data)
    stream = _KEYSTREAM if size <= len(_KEYSTREAM) else _KEY_BYTES * (size // len(_KEY_BYTES) + 1)
    # One XOR of two big integers: linear, and far faster than a loop over code units.
    mixed = int.from_bytes(data, "little") ^ int.from_bytes(stream[:size], "little")
    return mixed.to_bytes(size, "little").decode("utf-16-le", "surrogatepass")


def _guarded(decode: Callable[[], _T]) -> _T | CollectRejection:
    try:
        return decode()
    except _Reject as reject:
        return CollectRejection(reject.reason, reject.detail)
    except Exception as exc:  # the worker must survive any input, however strange
        return CollectRejection("internal_error", f"decoder failed with {type(exc).__name__}")


def _decode(raw: object) -> Mapping[object, object]:
    outer = _json_object(raw, "body")
    if "_d" not in outer:
        return outer
    version = outer.get("_v")
    if version is None:
        raise _Reject("bad_encoding", "body has _d but no _v")
    if type(version) is not int or version != ENCODING_VERSION:
        raise _Reject("unsupported_version", f"_v must be {ENCODING_VERSION}")
    encoded = outer.get("_d")
    if not isinstance(encoded, str):
        raise _Reject("bad_encoding", "_d must be a string")
    if len(encoded) > MAX_RAW_BYTES:
        raise _Reject("too_large", f"_d is {len(encoded)} characters, over {MAX_RAW_BYTES}")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise _Reject("bad_encoding", "_d is not valid base64") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject("invalid_utf8", "_d does not decode to UTF-8") from None
    return _json_object(xor_code_units(text), "_d")


def _json_object(raw: object, where: str) -> Mapping[object, object]:
    loaded = load_json_object(raw)
    if isinstance(loaded, Rejection):
        detail = loaded.detail if where == "body" else f"decoded {where}: {loaded.detail}"
        raise _Reject(loaded.reason, detail)
    return loaded
