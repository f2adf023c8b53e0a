#!/usr/bin/env python
"""Django's command-line utility for the example site.

``python examples/django_site/manage.py runserver`` serves on 127.0.0.1:$PORT (default 8000).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
    from django.core.management import execute_from_command_line
    from django.core.management.commands import runserver

    # runserver's default address is 127.0.0.1:8000; let $PORT choose the port.
    runserver.Command.default_port = os.environ.get("PORT", "8000")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
