"""The ``memberlab`` command line: thin wiring over the library and the service."""
