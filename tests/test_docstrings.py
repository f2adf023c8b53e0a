"""Every example in every docstring of ``skopos`` runs and shows what it says (``doctest``)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import skopos

# Framework support is an optional extra: a module that cannot be imported because its
# framework is not installed has no example to run here. Anything else that fails to import
# fails the test.
OPTIONAL_FRAMEWORKS = {"django", "fastapi", "flask", "starlette"}
NOT_IMPORTED = {"skopos.__main__"}  # importing it runs the command line


def every_module() -> list[ModuleType]:
    modules = [skopos]
    for info in pkgutil.walk_packages(skopos.__path__, "skopos."):
        if info.name in NOT_IMPORTED:
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ModuleNotFoundError as error:
            if (error.name or "").partition(".")[0] not in OPTIONAL_FRAMEWORKS:
                raise
    return modules


def configure_django() -> None:
    """doctest looks at every global of a module, Django's lazy ``settings`` too, and that
    raises on any attribute until settings are configured. In a whole run the Django tests
    configure them when collected; run alone, this test does."""
    try:
        from django.conf import settings  # type: ignore[import-untyped]
    except ModuleNotFoundError:
        return
    if not settings.configured:
        settings.configure()


def test_docstring_examples() -> None:
    configure_django()
    failed = {}
    for module in every_module():
        result = doctest.testmod(module)
        if result.failed:
            failed[module.__name__] = result.failed
    assert failed == {}, "doctest failures, printed above"
