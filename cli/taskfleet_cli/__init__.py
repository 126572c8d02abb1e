"""The command line: starts each service, runs the admin commands, the fleet and the benchmark."""
