"""Operator tools, never imported by the tracking engine: the schema and ``skopos setup``,
the embedded PocketBase of the demo and the tests, and the ``skopos`` command line."""
