"""taskfleet: the shared kernel of the fleet (settings, store, broker, runner, outbox)."""

__version__ = "0.1.0"
