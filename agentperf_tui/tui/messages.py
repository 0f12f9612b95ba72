"""Messages the engine side posts to the dashboard (frames replace older pending frames)."""

from __future__ import annotations

from textual.message import Message

from agentperf_tui.engine.frames import Frame


class FrameArrived(Message):
    """A new frame; a pending FrameArrived is replaced by a newer one (never a backlog)."""

    def __init__(self, frame: Frame) -> None:
        super().__init__()
        self.frame = frame

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FrameArrived)
