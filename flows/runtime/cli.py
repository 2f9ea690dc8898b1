"""How a flow run by hand (`python -m flows.<name>`) ends: one readable line.

Prefect's run logs go to stderr as the run goes; the last word is ours: on success one
line on stdout and exit code 0, on failure the reason on one line of stderr and exit code
1, never a traceback for an outcome Prefect has already recorded (the run's page in the
UI has the details)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from prefect.client.schemas.objects import State


def finish(state: State, outcome: Callable[[Any], str]) -> NoReturn:
    if state.is_completed():
        print(outcome(state.result()), flush=True)
        sys.exit(0)
    message = (state.message or "").strip().splitlines()
    print(f"{state.name}: {message[0] if message else 'see the run logs above'}", file=sys.stderr)
    sys.exit(1)
