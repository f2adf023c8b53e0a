"""The test suite, a package mirroring ``skopos``'s (``tests/tracking/test_snapshot.py`` tests
``skopos/_tracking/snapshot.py``).

Every directory under ``tests`` is a package, so modules of the same name in different
directories (``conftest``, ``test_client``) get distinct names, ``tests.pocketbase.test_client``,
for pytest and mypy alike. Plain helpers live in ``tests._support``, fixtures in ``conftest.py``;
no test module imports another.
"""
