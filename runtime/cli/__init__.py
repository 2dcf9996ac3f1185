"""The `janus-rt` command line: on top of everything; nothing in the library imports it."""
