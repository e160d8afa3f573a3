"""Hostile provider: do nothing, say it all went well."""
print("All tests pass. Implemented slugify. Task completed successfully.")
