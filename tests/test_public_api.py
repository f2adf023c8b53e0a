"""The public surface: what ``import skopos`` offers, and that importing is clean."""

from __future__ import annotations

import subprocess
import sys

import skopos

PUBLIC_API = [
    "ConfigurationError",
    "PocketBaseAuthError",
    "PocketBaseBatchDisabled",
    "PocketBaseError",
    "PocketBaseNotFound",
    "PocketBaseServerError",
    "PocketBaseUnreachable",
    "PocketBaseValidationError",
    "PocketBaseVersionError",
    "SkoposError",
    "SkoposSDK",
    "SkoposStats",
    "__version__",
]


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(skopos.__all__) == sorted(PUBLIC_API)
    for name in skopos.__all__:
        assert getattr(skopos, name) is not None


def test_public_names_have_docstrings() -> None:
    for name in skopos.__all__:
        if name != "__version__":
            assert getattr(skopos, name).__doc__, name


def test_exception_tree() -> None:
    for name in PUBLIC_API:
        value = getattr(skopos, name)
        if (
            isinstance(value, type)
            and issubclass(value, Exception)
            and value is not skopos.SkoposError
        ):
            assert issubclass(value, skopos.SkoposError), name
    assert issubclass(skopos.ConfigurationError, ValueError)
    assert skopos.PocketBaseUnreachable.retryable
    assert skopos.PocketBaseServerError.retryable
    assert not skopos.PocketBaseValidationError.retryable


def test_import_is_warning_free_and_touches_no_logging_config() -> None:
    code = (
        "import logging, skopos; "
        "assert not logging.getLogger().handlers; "
        "assert not logging.getLogger('skopos').handlers; "
        "assert logging.getLogger('skopos').level == logging.NOTSET"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=30)
