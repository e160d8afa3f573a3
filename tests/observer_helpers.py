"""A run observer for tests (`core/live.py`'s RunObserver): keeps the provider's events as the
live progress line gets them; a subclass acts on a stage (`step`) as it starts."""

from __future__ import annotations

from cto_harness.engines.base import ProviderEvent


class CollectEvents:
    def __init__(self) -> None:
        self.events: list[ProviderEvent] = []

    def step(self, name: str) -> None:
        pass

    def harness_event(self, type_: str, data: object) -> None:
        pass

    def provider_event(self, event: ProviderEvent) -> None:
        self.events.append(event)
