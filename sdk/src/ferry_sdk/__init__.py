"""Ferry's Python client library and the ``ferry`` command line."""
