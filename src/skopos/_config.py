"""SDK options: keyword arguments, then ``SKOPOS_*`` environment variables, then defaults.

Every option has one environment variable, named ``SKOPOS_`` + the option in
upper case (``batch_interval`` → ``SKOPOS_BATCH_INTERVAL``). Values are
validated once, at ``init``; a bad value raises ``ConfigurationError`` naming
the option and where it came from.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from skopos._exceptions import ConfigurationError
from skopos._tracking.client_ip import TrustedProxies, client_ip_header

__all__ = ["OPTION_NAMES", "SkoposOptions", "check_options", "resolve_option", "resolve_options"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class SkoposOptions:
    """The validated configuration of one ``SkoposSDK`` instance (seconds are floats)."""

    pocketbase_url: str
    site_id: str
    admin_email: str
    admin_password: str = dataclasses.field(repr=False)
    batch: bool = False
    batch_interval: float = 10.0
    max_batch_size: int = 100
    session_timeout: float = 1800.0
    js_error_batch_interval: float = 0.0
    config_refresh_interval: float = 900.0
    realtime: bool = True
    max_queue_size: int = 10_000
    max_queue_bytes: int = 32 << 20
    request_timeout: float = 10.0
    trusted_proxies: tuple[str, ...] = ()
    client_ip_header: str = "x-forwarded-for"
    spool_dir: str | None = None
    spool_max_bytes: int = 256 << 20
    worker_process: bool = False
    country_lookup: bool = True
    geoip_database: str | None = None
    handle_sigterm: bool = True
    visitor_id: str = "stable"
    salt_file: str | None = None
    respect_privacy_signals: bool = False
    respect_dnt: bool = False
    privacy_signal_action: str = "anonymous"
    scrub_paths: bool = True
    scrub_ids: bool = True
    before_send: BeforeSend | str | None = None
    # Tracking ids that /collect messages may name besides site_id (the official client
    # script says which site it tracks in every message).
    collect_site_ids: tuple[str, ...] = ()
    strict: bool = False


# Changes or drops what an activity stores, in the worker: ``before_send(fields) -> fields |
# None`` (see _tracking/hooks.py); or a "module:function" path to one (worker_process).
BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]

_REQUIRED = ("pocketbase_url", "site_id", "admin_email", "admin_password")
_CHOICES = {"visitor_id": ("stable", "daily"), "privacy_signal_action": ("anonymous", "drop")}
_FIELDS = {f.name: f for f in dataclasses.fields(SkoposOptions)}
OPTION_NAMES = frozenset(_FIELDS)
_BOUNDS: dict[str, tuple[float, float]] = {
    "batch_interval": (0.01, 3600.0),
    "max_batch_size": (1, 1000),
    "session_timeout": (1.0, 7 * 86400.0),
    "js_error_batch_interval": (0.0, 86400.0),
    "config_refresh_interval": (0.5, 86400.0),
    "max_queue_size": (1, 10_000_000),
    "max_queue_bytes": (1 << 20, 1 << 36),
    "request_timeout": (0.1, 300.0),
    "spool_max_bytes": (1 << 20, 1 << 40),
}


def _env_name(option: str) -> str:
    return "SKOPOS_" + option.upper()


def _coerce(option: str, value: Any, source: str) -> Any:
    kind = _FIELDS[option].type
    try:
        if option == "before_send":
            if callable(value):
                return value
            text = str(value).strip()
            module, colon, attribute = text.partition(":")
            if not (module and colon and attribute):
                raise ValueError("expected a callable or a 'module:function' path")
            return text
        if option in _CHOICES:
            text = str(value).strip().lower()
            if text not in _CHOICES[option]:
                raise ValueError(f"expected one of {', '.join(_CHOICES[option])}")
            return text
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError("expected true or false")
        if kind == "tuple[str, ...]":
            items = value.split(",") if isinstance(value, str) else list(value)
            values = tuple(str(item).strip() for item in items if str(item).strip())
            if option == "trusted_proxies":
                TrustedProxies(values)  # ValueError names a bad preset or range
            return values
        if kind in ("float", "int"):
            if isinstance(value, bool):
                raise ValueError("expected a number")
            number = float(value) if kind == "float" else int(value)
            low, high = _BOUNDS[option]
            if not low <= number <= high:
                raise ValueError(f"must be between {low:g} and {high:g}")
            return number
        text = str(value).strip()
        if not text:
            raise ValueError("must not be empty")
        if option == "client_ip_header":
            return client_ip_header(text)  # ValueError names the known headers and presets
        return text
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{option} ({source}) is invalid: {value!r}: {exc}") from None


def _reject_unknown(names: Iterable[str], where: str) -> None:
    unknown = sorted(set(names) - set(_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s){where}: {', '.join(unknown)}; valid options: {', '.join(_FIELDS)}"
        )


def check_options(options: Mapping[str, Any], *, where: str = "") -> None:
    """Raise ``ConfigurationError`` now for an unknown option or a bad value in ``options``
    (a partial set: required ones may come later, from the environment).

    >>> check_options({"batch_interval": 5})
    >>> check_options({"batch_intervall": 5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    skopos._exceptions.ConfigurationError: unknown option(s): batch_intervall; valid options: ...
    """
    _reject_unknown(options, f" in {where}" if where else "")
    for option, value in options.items():
        if value is not None:
            _coerce(option, value, where or "argument")


def resolve_option(
    option: str, arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Any:
    """One option's value from ``arguments``, the environment or its default (for an
    integration that needs it before the SDK starts).

    >>> resolve_option("handle_sigterm", {}, environ={"SKOPOS_HANDLE_SIGTERM": "off"})
    False
    """
    environ = os.environ if environ is None else environ
    given = arguments.get(option)
    if given is not None:
        return _coerce(option, given, "argument")
    if environ.get(_env_name(option)):
        return _coerce(option, environ[_env_name(option)], _env_name(option))
    return _FIELDS[option].default


def resolve_options(
    arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> SkoposOptions:
    """Merge ``arguments`` (None means "not given") with the environment and defaults.

    >>> options = resolve_options(
    ...     {"pocketbase_url": "http://127.0.0.1:8090", "site_id": "abc",
    ...      "admin_email": "a@b.c", "admin_password": "pw"},
    ...     environ={"SKOPOS_BATCH": "true"},
    ... )
    >>> options.batch, options.batch_interval
    (True, 10.0)
    """
    environ = os.environ if environ is None else environ
    _reject_unknown(arguments, "")
    values: dict[str, Any] = {}
    for option in _FIELDS:
        given = arguments.get(option)
        if given is not None:
            values[option] = _coerce(option, given, "argument")
        elif environ.get(_env_name(option)):
            values[option] = _coerce(option, environ[_env_name(option)], _env_name(option))
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        hints = ", ".join(f"{name} (or {_env_name(name)})" for name in missing)
        raise ConfigurationError(f"missing required option(s): {hints}")
    url = urlsplit(values["pocketbase_url"])
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigurationError(
            f"pocketbase_url must be an http(s) URL, got {values['pocketbase_url']!r}"
        )
    if callable(values.get("before_send")) and values.get("worker_process"):
        raise ConfigurationError(
            "before_send must be a 'module:function' path with worker_process=True: a function"
            " object cannot reach the worker process"
        )
    return SkoposOptions(**values)
