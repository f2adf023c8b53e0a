"""Where things are, independent of which test module asks."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: ``tests`` is importable from here."""
DATA = ROOT / "tests" / "data"
STATIC = ROOT / "src" / "skopos" / "static"


def subprocess_env(**extra: str) -> dict[str, str]:
    """This environment, plus the repository root on ``PYTHONPATH`` so that a subprocess can
    ``import tests._support...`` (or run ``python -m tests._support.<script>``)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}
