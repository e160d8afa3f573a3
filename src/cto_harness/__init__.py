"""cto-harness: run third-party coding agents on copied fixture tasks, keep checkable evidence."""

__version__ = "0.1.0"
REPORT_SCHEMA_VERSION = "1.0"
