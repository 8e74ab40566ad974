"""The daemon: settings, wiring of the services, privileges."""
