"""Scenario-based validators: the adapter validator and its stand-in providers."""
