"""ASGI entry point: ``uvicorn --app-dir examples/django_site example_site.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
os.environ.setdefault("DJANGO_ASGI", "1")  # settings.SKOPOS: route to the async views
application = get_asgi_application()
