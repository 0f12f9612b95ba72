"""What the dashboard drives: a live Session, a ReplayPlayer, or a recording stand-in for tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Controller(Protocol):
    """The actions the dashboard's keys map to."""

    load_running: bool

    def change_target(self, fn: Callable[[int], int]) -> None: ...

    def toggle_pause(self) -> None: ...

    def request_stop(self, reason: str = "") -> None: ...

    def force_stop(self) -> None: ...  # a second signal: kill what the session started, now


class NullController:
    """Records every call (tests and replay without a player)."""

    def __init__(self, load_running: bool = True, target: int = 8):
        self.load_running = load_running
        self.target = target
        self.calls: list[tuple[str, Any]] = []
        self.searching = False

    def change_target(self, fn: Callable[[int], int]) -> None:
        self.target = max(0, fn(self.target))
        self.calls.append(("target", self.target))

    def toggle_pause(self) -> None:
        self.calls.append(("pause", None))

    def request_stop(self, reason: str = "") -> None:
        self.load_running = False
        self.calls.append(("stop", reason))

    def force_stop(self) -> None:
        self.calls.append(("force_stop", None))

    def start_search(self, settings: Any) -> None:
        self.searching = True
        self.calls.append(("search", settings.mode))

    def abort_search(self, reason: str = "") -> None:
        self.searching = False
        self.calls.append(("abort_search", reason))

    def apply_tune(self, changes: dict[str, str]) -> None:
        self.calls.append(("tune", dict(changes)))

    def save_tuned_profile(self) -> None:
        self.calls.append(("save_profile", None))
