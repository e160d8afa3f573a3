"""Hostile provider: never finish."""
import time

time.sleep(3600)
