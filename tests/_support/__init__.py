"""Plain helpers shared by the tests (fixtures live in ``conftest.py``), and the scripts tests
run as subprocesses (``python -m tests._support.<script>`` with the repository root on
``PYTHONPATH``)."""
