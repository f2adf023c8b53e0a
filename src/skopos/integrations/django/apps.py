"""The Django app config: ``INSTALLED_APPS += ["skopos.integrations.django"]``.

Example::

    INSTALLED_APPS = ["django.contrib.staticfiles", "skopos.integrations.django"]
    SKOPOS = {"site_id": "abc123", "init_on_ready": True}
"""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]

from skopos._sdk import install_sigterm_handler
from skopos.integrations.django import get_sdk, skopos_settings

__all__ = ["SkoposConfig"]


class SkoposConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    """Checks ``settings.SKOPOS`` at startup; starts the SDK there if ``init_on_ready``; makes
    SIGTERM an exit where nothing handles it (``runserver``), unless ``handle_sigterm`` is off.

    Example::

        >>> from django.apps import apps
        >>> apps.get_app_config("skopos").verbose_name  # doctest: +SKIP
        'Skopos analytics'
    """

    name = "skopos.integrations.django"
    label = "skopos"  # the default, "django", would read as Django's own
    verbose_name = "Skopos analytics"

    def ready(self) -> None:
        """Fail on a misspelt ``SKOPOS`` key now rather than at the first request."""
        settings = skopos_settings()
        # Here, in the main thread: the SDK itself may start in a request thread, where no
        # signal handler can be installed.
        install_sigterm_handler(settings.sdk_options)
        if settings.init_on_ready:
            get_sdk()
