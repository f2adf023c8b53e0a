"""``python -m skopos`` runs the ``skopos`` command line."""

from __future__ import annotations

import sys

from skopos._admin.cli import main

sys.exit(main())
