"""The event endpoint and the client script as URL patterns.

Example (the project's urls.py)::

    urlpatterns = [path("", include("skopos.integrations.django.urls")), ...]

The paths are ``SKOPOS["event_path"]``, ``SKOPOS["script_path"]`` and
``SKOPOS["collect_path"]`` (``/api/event``, ``/skopos.js``, ``/collect`` with
``/collect/health``), the views async with ``SKOPOS["async_views"]``; both are read when
Django first loads the URLconf.
"""

from __future__ import annotations

from typing import Any

from django.urls import path  # type: ignore[import-untyped]

from skopos.integrations.django import skopos_settings, views

__all__ = ["urlpatterns"]

_settings = skopos_settings()
_event, _script, _collect = (
    (views.aevent, views.ascript, views.acollect)
    if _settings.async_views
    else (views.event, views.script, views.collect)
)
_endpoint = _settings.endpoint

urlpatterns: list[Any] = [path(_endpoint.event_path[1:], _event, name="skopos-event")]
if _endpoint.script_path:
    urlpatterns.append(path(_endpoint.script_path[1:], _script, name="skopos-script"))
if _endpoint.collect_path is not None and _endpoint.health_path is not None:
    urlpatterns += [
        path(_endpoint.collect_path[1:], _collect, name="skopos-collect"),
        path(_endpoint.health_path[1:], views.collect_health, name="skopos-collect-health"),
    ]
