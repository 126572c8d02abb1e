"""taskfleet: the shared kernel of the fleet (settings, store, broker, runner, outbox)."""

from importlib.metadata import version

# One source, pyproject.toml: the installed distribution's metadata says which release this is.
__version__ = version("taskfleet")
