"""Settings for the example site; Skopos options come from SKOPOS_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
# The page links to itself under the other name (127.0.0.1 <-> localhost) as its outbound link.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["skopos.integrations.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",  # the Skopos views are exempt
]
ROOT_URLCONF = "example_site.urls"
WSGI_APPLICATION = "example_site.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

SKOPOS = {
    # Everything else (pocketbase_url, site_id, admin_email, admin_password...) from SKOPOS_*.
    # Under an ASGI server, the async views save a thread hop per event.
    "async_views": os.environ.get("DJANGO_ASGI") == "1",
}
