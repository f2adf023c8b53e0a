"""The event endpoint and the client script as URL patterns.

Example (the project's urls.py)::

    urlpatterns = [path("", include("skopos.integrations.django.urls")), ...]

The paths are ``SKOPOS["event_path"]`` and ``SKOPOS["script_path"]`` (``/api/event``,
``/skopos.js``), the views async with ``SKOPOS["async_views"]``; both are read when Django
first loads the URLconf.
"""

from __future__ import annotations

from typing import Any

from django.urls import path  # type: ignore[import-untyped]

from skopos.integrations.django import skopos_settings, views

__all__ = ["urlpatterns"]

_settings = skopos_settings()
_event, _script = (
    (views.aevent, views.ascript) if _settings.async_views else (views.event, views.script)
)

urlpatterns: list[Any] = [path(_settings.endpoint.event_path[1:], _event, name="skopos-event")]
if _settings.endpoint.script_path:
    urlpatterns.append(path(_settings.endpoint.script_path[1:], _script, name="skopos-script"))
