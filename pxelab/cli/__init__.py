"""The `pxelab` command line: one module per command group, shared flags in `settings`."""
