"""The example's own views: the shared pages and a server-side event."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from skopos.integrations.django import get_sdk

INDEX = (settings.SHARED / "index.html").read_bytes()
OUTBOUND = (settings.SHARED / "outbound.html").read_bytes()


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(INDEX)


@require_GET
def outbound_target(request: HttpRequest) -> HttpResponse:
    return HttpResponse(OUTBOUND)


@csrf_exempt  # an example endpoint without a form; real signups keep CSRF protection
@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    # What only the server knows is tracked from the server, in the visitor's session.
    get_sdk().track_server_event(request, "signup", {"plan": "pro"})
    return HttpResponse(status=204)
