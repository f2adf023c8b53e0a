"""Who imports ``rich``: the command line's renderers only, never the SDK or the pure parts.

(``import httpx`` itself loads rich when click, pygments and rich are all installed, for
httpx's own command line; that is httpx's doing, measured at ~3 MB and ~30 ms once per
process, and no Skopos module asks for it.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "skopos"
# The terminal side of the command line; everything else must do without rich.
ALLOWED = {"console.py", "report_render.py", "cli.py", "demo.py"}


def _imports_rich(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "rich" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rich":
            return True
    return False


def test_only_the_terminal_modules_import_rich() -> None:
    importers = {
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if _imports_rich(path)
    }
    assert importers
    assert importers <= {f"_admin/{name}" for name in ALLOWED}


def test_the_metrics_module_stands_alone() -> None:
    code = (
        "import sys, skopos._admin.metrics;"
        " print(sorted(m for m in sys.modules if m in ('rich', 'httpx')))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
