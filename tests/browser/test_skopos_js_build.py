"""Static checks of the browser client: small, built from the current source, and private.

Its behaviour is tested in a real browser by ``test_skopos_js.py`` beside this file; these need
no browser and run everywhere, fast.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest

from tests._support.paths import STATIC

SOURCE = STATIC / "skopos.js"
MINIFIED = STATIC / "skopos.min.js"
SERVED = MINIFIED if MINIFIED.is_file() else SOURCE
GZIP_LIMIT = 3000  # bytes; "under 3 KB" read strictly
SCRIPTS = [path for path in (SOURCE, MINIFIED) if path.is_file()]


def test_served_script_is_under_3_kb_gzipped() -> None:
    size = len(gzip.compress(SERVED.read_bytes(), compresslevel=9))
    assert size < GZIP_LIMIT, f"{SERVED.name} is {size} bytes gzipped, limit {GZIP_LIMIT}"


def test_minified_build_is_from_the_current_source() -> None:
    if not MINIFIED.is_file():
        pytest.skip("no skopos.min.js: the source itself is served")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    first_line = MINIFIED.read_text(encoding="utf-8").split("\n", 1)[0]
    # The header that scripts/build-js writes; a mismatch means the source changed since.
    expected = f"/*! skopos.js | MIT | source sha256 {digest} */"
    assert first_line == expected, "skopos.min.js is stale: run scripts/build-js"


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_script_has_no_storage_and_no_remote_address(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    for api in ("document.cookie", "localStorage", "sessionStorage", "indexedDB", "caches."):
        assert api not in text, f"{script.name} uses {api}"
    # Events only ever go to data-endpoint (default "/api/event"): no address is built in.
    assert re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE) is None
