"""The site's data files: each is a script that hands a packed payload to the page.

Chromium refuses ``fetch()`` and XHR of local files from a ``file://`` page, but it runs a
``<script src>`` beside the page, so every data file is ``saelabPack("<key>","<bytes>");``: the
page injects the script and the global callback receives the payload. The payload is gzip
(decoded in the page by the browser's ``DecompressionStream``) of compact JSON, or of LEB128
varints for the window shards (10.6 bits a token on 600k SmolLM2 tokens, against 11.4 for
16-bit ids).

The gzip bytes sit in the string literal as they are, escaped only where JavaScript needs it
(quote, backslash, CR, LF, NUL), and the page loads the script with ``charset="x-user-defined"``,
the WHATWG encoding that maps each byte to one character (0x80-0xFF to U+F780-U+F7FF), so
``charCodeAt(i) & 0xFF`` gives the bytes back. That costs 2.7% over the gzip size where base64
costs 33%, and the size goal (four SAEs in ~50 MB) is tight.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._/-]+$")
# On an SAE's 31 MB of payloads level 5 is 0.9% larger than 6 (17.1 vs 16.9 MB) in half the time (0.7 s vs
# 1.4 s), and 9 gains another 0.1% for 1.9 s.
GZIP_LEVEL = 5


def sig(value: float, digits: int = 3) -> float | int:
    """``value`` to ``digits`` significant digits, as the shortest JSON number (4.37, 12, 0.0123).

    Raises ValueError on NaN or infinity: JSON has neither, and the site would show them wrong."""
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite value ({value!r}) into the site")
    rounded = float(f"{value:.{digits}g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def sig_list(values: np.ndarray, digits: int = 3) -> list[float]:
    """:func:`sig` of every value at once (the windows' activations: ~1.5 million per SAE).

    ``round(x * 10^d) / 10^d`` with an exact power of ten (d <= 22) is the double nearest the
    rounded decimal, whose shortest repr is that decimal, as ``sig`` gives."""
    x = np.asarray(values, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"cannot write a non-finite value ({x[~np.isfinite(x)][0]!r}) into the site")
    out = np.zeros_like(x)
    nonzero = x != 0
    v = x[nonzero]
    d = digits - 1 - np.floor(np.log10(np.abs(v))).astype(np.int64)
    scale = 10.0 ** np.abs(d)
    out[nonzero] = np.where(d >= 0, np.round(v * scale) / scale, np.round(v / scale) * scale)
    return out.tolist()


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def varints(values: np.ndarray) -> bytes:
    """Non-negative integers as LEB128 varints (7 bits a byte, high bit set on all but the last)."""
    signed = np.asarray(values, dtype=np.int64).ravel()
    if signed.size == 0:
        return b""
    if signed.min() < 0:
        raise ValueError(f"varints are non-negative; got {int(signed.min())}")
    v = signed.astype(np.uint64)
    n = np.ones(v.size, dtype=np.int64)
    for bits in (7, 14, 21, 28, 35, 42, 49, 56, 63):
        n += v >= np.uint64(1) << np.uint64(bits)
    out = np.zeros(int(n.sum()), dtype=np.uint8)
    starts = np.cumsum(n) - n
    for k in range(int(n.max())):
        sel = n > k
        byte = (v[sel] >> np.uint64(7 * k)) & np.uint64(127)
        more = (n[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + k] = (byte | more).astype(np.uint8)
    return out.tobytes()


_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"), (b"\0", b"\\x00"))
"""Bytes a JavaScript string literal cannot hold as they are; the backslash goes first."""
_PACK = re.compile(rb'^saelabPack\("([A-Za-z0-9._/-]+)","(.*)"\);\n$', re.DOTALL)
_UNESCAPE = re.compile(rb"\\(x00|.)", re.DOTALL)


def pack_script(key: str, payload: bytes) -> bytes:
    """The script that hands ``payload`` (gzip'd) to the page's ``saelabPack``."""
    if not KEY_PATTERN.match(key):
        raise ValueError(f"pack key {key!r} may hold only letters, digits and . _ / -")
    packed = gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)
    for raw, escaped in _ESCAPES:
        packed = packed.replace(raw, escaped)
    return b'saelabPack("' + key.encode("ascii") + b'","' + packed + b'");\n'


def read_pack(script: bytes) -> tuple[str, bytes]:
    """The key and the payload of a data file (what the page decodes), for tests and inspection."""
    found = _PACK.match(script)
    if found is None:
        raise ValueError('not a saelab site data file (saelabPack("key","...");)')
    table = {b"x00": b"\0", b"n": b"\n", b"r": b"\r"}
    packed = _UNESCAPE.sub(lambda m: table.get(m.group(1), m.group(1)), found.group(2))
    return found.group(1).decode("ascii"), gzip.decompress(packed)


def write_pack(root: Path, key: str, payload: bytes) -> int:
    """Write ``root/data/<key>.js`` and return its size in bytes."""
    path = root / "data" / f"{key}.js"
    path.parent.mkdir(parents=True, exist_ok=True)
    script = pack_script(key, payload)
    path.write_bytes(script)
    return len(script)


def histogram(edges: tuple[float, ...], counts: tuple[int, ...]) -> dict[str, Any]:
    """Edges as ``lo``/``hi`` when evenly spaced (every histogram the builder makes), else listed."""
    if not counts:
        return {"counts": []}
    lo, hi = edges[0], edges[-1]
    step, tolerance = (hi - lo) / (len(edges) - 1), 1e-6 * (abs(hi - lo) or 1.0)
    if all(abs(e - (lo + i * step)) <= tolerance for i, e in enumerate(edges)):
        return {"lo": sig(lo, 4), "hi": sig(hi, 4), "counts": [int(c) for c in counts]}
    return {"edges": [sig(e, 4) for e in edges], "counts": [int(c) for c in counts]}
