"""One settings mapping (Flask's ``app.config["SKOPOS"]``, Django's ``settings.SKOPOS``)
split by who uses it: the endpoint, the SDK, and the framework's own flags.

Both are validated here, when the app is configured, not at the first request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skopos._config import OPTION_NAMES, check_options
from skopos._exceptions import ConfigurationError
from skopos.integrations.endpoint import EndpointConfig

__all__ = ["SplitSettings", "split_settings"]

_ENDPOINT_KEYS = frozenset(f.name for f in dataclasses.fields(EndpointConfig))


@dataclass(frozen=True)
class SplitSettings:
    """A settings mapping, validated and split."""

    endpoint: EndpointConfig
    sdk_options: dict[str, Any]
    flags: dict[str, bool] = field(default_factory=dict)


def split_settings(
    raw: object, *, where: str, flags: frozenset[str] = frozenset()
) -> SplitSettings:
    """Validate ``raw`` (``where`` names it in errors) and split it; ``flags`` are the
    framework's own boolean keys. Raises ``ConfigurationError``.

    >>> split_settings({"site_id": "abc", "cors_origins": "https://a.test"}, where="SKOPOS")
    SplitSettings(endpoint=EndpointConfig(event_path='/api/event', script_path='/skopos.js', \
max_body_bytes=16384, cors_origins=('https://a.test',), collect_path='/collect'), \
sdk_options={'site_id': 'abc'}, flags={})
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must be a dict, not {type(raw).__name__}")
    unknown = sorted(set(raw) - _ENDPOINT_KEYS - OPTION_NAMES - flags)
    if unknown:
        valid = ", ".join(sorted(_ENDPOINT_KEYS | OPTION_NAMES | flags))
        raise ConfigurationError(
            f"unknown key(s) in {where}: {', '.join(unknown)}; valid keys: {valid}"
        )
    sdk_options = {key: value for key, value in raw.items() if key in OPTION_NAMES}
    check_options(sdk_options, where=where)
    try:
        endpoint = EndpointConfig(
            **{key: value for key, value in raw.items() if key in _ENDPOINT_KEYS}
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    chosen = {key: raw[key] for key in flags if key in raw}
    for key, value in chosen.items():
        if not isinstance(value, bool):
            raise ConfigurationError(f"{where}[{key!r}] must be True or False, got {value!r}")
    return SplitSettings(endpoint, sdk_options, chosen)
