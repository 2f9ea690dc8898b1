"""Give the processes tests and benchmarks start a terminal's SIGINT."""

from __future__ import annotations

import signal


def restore_sigint() -> None:
    """A shell that runs us as a background job (nohup, `&` without job control) starts us with
    SIGINT ignored, and every process we start would inherit that: `prefect worker start`
    (which turns SIGTERM into SIGINT for itself) and Ctrl-C'd servers would never stop (a
    `make bench` started that way lost its worker part). A handled signal is reset to the
    default in a child, so handling it here gives them a terminal's SIGINT."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
