"""balance-monitor: watch brokerage account balances and alert on what changes."""

__version__ = "0.1.0"
