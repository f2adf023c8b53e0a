"""The shared demo pages, plus the Skopos event endpoint and client script."""

from __future__ import annotations

from django.urls import include, path

from example_site import views

urlpatterns = [
    path("", include("skopos.integrations.django.urls")),  # /api/event, /skopos.js
    path("", views.page),
    path("about", views.page),
    path("spa/step-2", views.page),
    path("outbound-target", views.outbound_target),
    path("api/signup", views.signup),
]
