"""The ``recgraph`` command: thin sub-commands over the library."""
