"""What to do about each reason a window is not measurable: the advice shown beside every validity reason.

The reasons come from Session.validity_reasons (and the workers' health); each starts with a
fixed phrase, matched here. A reason with no entry gets the general advice, never nothing.
"""

from __future__ import annotations

ADVICE: tuple[tuple[str, str], ...] = (
    ("client loop lag", "the load generator's own loop is late: use more worker processes (--workers N), "
                        "close other work on this machine, or lower the frame rate (--fps 2)"),
    ("dispatch delay", "requests leave late after their agent is ready: the client is CPU bound; add workers "
                       "(--workers N) or run agents on a second host"),
    ("twin behind real time", "the twin's own process cannot keep pace with the GPUs it simulates: simulate a "
                              "slice (twin-gb300-nvl72-slice), fewer agents, or a less loaded machine"),
    ("worker", "an agent worker process is late, silent or gone: see the Log; the window restarts when it recovers"),
    ("agent task crashed", "an agent raised an exception: see the Log for the traceback and report it"),
    ("effective concurrency", "fewer agents are in work than the target (requests failing or agents stuck): "
                              "check the failure causes in the Log and the server's queue"),
    ("--require-reconciled", "client and server disagree or metrics are missing: see the Server panel's "
                             "client-vs-server lines"),
    ("server ", "the server changed state during the window (restarted, exited): see the Log"),
)
GENERAL = "see the Log panel for what happened at that time"


def advice_for(reason: str) -> str:
    """The advice for one validity reason (the general advice when none matches)."""
    for prefix, advice in ADVICE:
        if reason.startswith(prefix) or prefix in reason[:40]:
            return advice
    return GENERAL
