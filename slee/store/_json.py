"""JSON encoding of stored documents, in one place so both backends store the same text.

Encoding always uses the standard library (compact separators, ``allow_nan=False``): NaN and
infinities are not JSON and PostgreSQL's JSONB would reject them at commit time, far from the
code that produced them. orjson is not used for encoding even when installed because it turns
NaN into ``null`` silently and refuses non-string dict keys, so results would depend on the
environment. Decoding valid JSON is the same in both, so orjson decodes when it is present.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "loads"]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
dumps = _encoder.encode

try:  # pragma: no cover - depends on the environment
    import orjson as _orjson

    def loads(text: str | bytes) -> Any:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:  # e.g. integers wider than 64 bits
            return json.loads(text)

except ImportError:
    loads = json.loads
