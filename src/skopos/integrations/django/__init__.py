"""Skopos for Django: the event endpoint and the client script as a reusable app.

settings.py::

    INSTALLED_APPS = [..., "skopos.integrations.django"]
    SKOPOS = {"site_id": "abc123"}  # merged over SKOPOS_* environment variables

urls.py::

    urlpatterns = [path("", include("skopos.integrations.django.urls")), ...]  # /api/event ...

A view that records a backend event::

    from skopos.integrations.django import get_sdk

    def signup(request):
        get_sdk().track_server_event(request, "signup", {"plan": "pro"})
        ...

``settings.SKOPOS`` holds the ``SkoposSDK.init`` options (``site_id``, ``pocketbase_url``,
``batch``...; anything not given comes from ``SKOPOS_*`` environment variables) and these keys of
the integration:

- ``event_path`` (``"/api/event"``), ``script_path`` (``"/skopos.js"``; ``None``: no script
  route), ``collect_path`` (``"/collect"``, the official client script's endpoint, with
  ``/collect/health``; ``None``: not served), ``max_body_bytes`` (16384), ``cors_origins``
  (``[]``: same origin only; ``["*"]``: any): see
  ``skopos.integrations.endpoint.EndpointConfig``. The paths are relative to where
  the urls are included: include them at the root.
- ``async_views`` (``False``): route to the ``async def`` views; set it when serving with an
  ASGI server (uvicorn, daphne...), where a sync view costs a thread hop per request.
- ``init_on_ready`` (``False``): start the SDK in ``AppConfig.ready()``, so a bad option
  stops the server from starting. Every management command then starts it too
  (``migrate``, and both processes of ``runserver``'s autoreloader).

Unknown keys raise ``ImproperlyConfigured`` when the app is loaded.

**The SDK's lifetime.** Unless ``init_on_ready`` is set, the SDK starts on first use (the first
event request or ``get_sdk()``), once per process: ``manage.py migrate`` never starts it.
Starting takes milliseconds and never waits for PocketBase: the SDK connects in the
background and calls wait in its queue meanwhile (PocketBase down, slow or misconfigured is
logged and shown in ``get_sdk().stats()``). Event requests that arrive while it starts wait
for it and are then tracked in the order they arrived. Only a bad option stops it:
``get_sdk()`` raises ``ConfigurationError``, and the event views log it once and answer 503.
At exit the SDK flushes for up to a second (``atexit``); the app makes SIGTERM an exit too
where nothing else handles it (``runserver``: see the README's lifecycle table;
``"handle_sigterm": False`` turns that off). ``shutdown(timeout)`` gives it longer, e.g.
from gunicorn's ``worker_exit`` hook::

    # gunicorn.conf.py
    def worker_exit(server, worker):
        from skopos.integrations import django as skopos_django

        skopos_django.shutdown(timeout=5.0)

Changing ``SKOPOS`` at run time (``override_settings`` in tests) shuts the SDK down; the next
use starts one with the new settings. The event views are exempt from CSRF checks:
``sendBeacon`` cannot send a token, and the endpoint is public by design (anyone may post to it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

# Django ships no type information: its names are ``Any`` here.
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.signals import setting_changed  # type: ignore[import-untyped]

from skopos._exceptions import ConfigurationError
from skopos._sdk import SkoposSDK
from skopos.integrations._lazy import LazySdk
from skopos.integrations._settings import split_settings
from skopos.integrations.endpoint import EndpointConfig

__all__ = ["SkoposSettings", "aget_sdk", "get_sdk", "shutdown", "skopos_settings"]

logger = logging.getLogger("skopos")


_FLAGS = frozenset({"async_views", "init_on_ready"})


@dataclass(frozen=True)
class SkoposSettings:
    """``settings.SKOPOS``, validated and split by who uses it.

    Example::

        >>> skopos_settings().endpoint.event_path  # doctest: +SKIP
        '/api/event'
    """

    endpoint: EndpointConfig
    sdk_options: dict[str, Any]
    async_views: bool = False
    init_on_ready: bool = False


def _parse(raw: object) -> SkoposSettings:
    try:
        split = split_settings(raw, where="settings.SKOPOS", flags=_FLAGS)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    return SkoposSettings(split.endpoint, split.sdk_options, **split.flags)


_parsed: SkoposSettings | None = None


def skopos_settings() -> SkoposSettings:
    """``settings.SKOPOS`` parsed (once; again after it changes); ``ImproperlyConfigured``.

    Example::

        config = skopos_settings().endpoint  # the EndpointConfig the views use
    """
    global _parsed
    parsed = _parsed
    if parsed is None:
        # A race here only parses twice: the result is the same.
        parsed = _parsed = _parse(getattr(settings, "SKOPOS", None) or {})
    return parsed


_sdk = LazySdk(lambda: SkoposSDK.init(**skopos_settings().sdk_options))


def get_sdk() -> SkoposSDK:
    """The process's SDK, started now if it is not yet; ``ConfigurationError`` for a bad
    option (PocketBase itself is the SDK's business: it connects in the background).

    Example::

        get_sdk().track_server_event(request, "payment-webhook-received", {"source": "stripe"})
    """
    return _sdk.get()


async def aget_sdk() -> SkoposSDK:
    """``get_sdk`` for async views: a first start runs in a thread, off the event loop.

    Example::

        (await aget_sdk()).track_server_event(request, "signup")
    """
    sdk = _sdk.peek()
    return sdk if sdk is not None else await asyncio.to_thread(_sdk.get)


def shutdown(timeout: float = 10.0) -> None:
    """Flush for at most ``timeout`` seconds and stop the SDK, if it was started.

    Never starts one; the next use after it starts a new SDK.

    Example::

        shutdown(timeout=5.0)  # in gunicorn's worker_exit hook
    """
    _sdk.shutdown(timeout)


def _on_setting_changed(sender: object, setting: str, **kwargs: Any) -> None:
    global _parsed
    if setting == "SKOPOS":
        _parsed = None
        _sdk.shutdown(5.0)


setting_changed.connect(_on_setting_changed, dispatch_uid="skopos.integrations.django")
