"""The syslog receiver: installers' log lines (RFC 3164 and RFC 5424 over UDP) on the timeline."""
