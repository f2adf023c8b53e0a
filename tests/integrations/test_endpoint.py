"""The framework-neutral endpoint decisions (``integrations/endpoint.py``): what ``precheck``
answers from headers alone, whatever the headers hold. Each adapter's own file sends the
same requests through its framework."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skopos.integrations.endpoint import EndpointConfig, content_length, precheck

CONFIG = EndpointConfig()
# str.isdigit() accepts all of these but the last two; int() refuses "²" and reads the rest.
MALFORMED_LENGTHS = ["²", "١٢", "٣", "-1", "+5", "1e3", "12 34", "0x10", "1" * 25, "\x00"]


@pytest.mark.parametrize("value", MALFORMED_LENGTHS)
def test_a_malformed_content_length_is_a_400(value: str) -> None:
    assert content_length({"content-length": value}) == -1
    response = precheck(CONFIG, "POST", {"content-length": value, "content-type": "text/plain"})
    assert response is not None
    assert response.status == 400


def test_content_lengths_that_are_fine() -> None:
    assert content_length({}) is None
    assert content_length({"content-length": ""}) is None
    assert content_length({"content-length": " 16384 "}) == 16384
    assert precheck(CONFIG, "POST", {"content-length": "16384"}) is None
    too_large = precheck(CONFIG, "POST", {"content-length": "16385"})
    assert too_large is not None
    assert too_large.status == 413


@given(
    st.sampled_from(["POST", "OPTIONS", "GET", "", "post"]),
    st.dictionaries(
        st.sampled_from(["content-length", "content-type", "origin"]), st.text(max_size=40)
    ),
)
def test_precheck_never_raises(method: str, headers: dict[str, str]) -> None:
    response = precheck(EndpointConfig(cors_origins=["*"]), method, headers)
    assert response is None or response.status in (204, 400, 405, 413, 415)
