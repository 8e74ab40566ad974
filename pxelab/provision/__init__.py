"""Provisioning: per-host install state (install -> installed) and `explain`."""
