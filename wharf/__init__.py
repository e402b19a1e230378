"""The ``wharf`` command: one entry point for every Wharf process."""
