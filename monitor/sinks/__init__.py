"""Notification sinks: one module per sink type, all behind :class:`monitor.sinks.base.Sink`."""
