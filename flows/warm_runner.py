"""Run one deployment's due flow runs inside this long-running process, warm.

Prefect's runner (`flow.serve`) and its workers start every flow run in a fresh Python
process. For a 5-minute tick that costs more than the tick itself: about 4 s of imports
(Prefect, dbt, DuckDB), a dbt parse and the replay dataset, against about 2 s of work
(bench/tick.py measures both). This loop takes the deployment's due runs from the Prefect
API and runs them here, so all of that stays loaded between ticks. Prefect still sees
ordinary flow runs: schedule, states, logs, artifacts, heartbeats, the deployment's
concurrency limit. Cancelling a run from the UI while it is running is not supported
(a tick takes seconds); cancelling a scheduled run is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.flow_engine import run_flow
from prefect.states import Cancelled, Pending

log = logging.getLogger(__name__)


def due_runs(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    """The deployment's scheduled runs whose start time has come, oldest first."""
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(
                before_=datetime.now(tz=UTC)
            ),
        ),
        sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC,
        limit=100,
    )


def claim(client: SyncPrefectClient, run: FlowRun) -> bool:
    """Move the run to Pending, as a worker would; False if someone else took it or the
    deployment's concurrency limit says wait."""
    result = client.set_flow_run_state(run.id, Pending())
    return result.state is not None and result.state.type == StateType.PENDING


def run_due(
    flow: Flow[..., Any], deployment_id: UUID, on_done: Callable[[State], None] | None = None
) -> int:
    """Run the newest due run of the deployment here; returns how many ran (0 or 1).

    Older due runs (the process was down, or a tick overran) are cancelled as superseded:
    every tick fetches the latest snapshot, so running them back to back would only
    repeat it, and runs would pile up after an outage."""
    with get_client(sync_client=True) as client:
        *superseded, newest = due_runs(client, deployment_id) or [None]
        for run in superseded:
            client.set_flow_run_state(
                run.id, Cancelled(message=f"Superseded by the newer due run {newest.name}")
            )
        if newest is None or not claim(client, newest):
            return 0
        state: State = run_flow(  # type: ignore[assignment]
            flow, flow_run=client.read_flow_run(newest.id), return_type="state"
        )
        log.info("Flow run %s finished: %s", newest.name, state.name)
        if on_done is not None:
            on_done(state)
        return 1


def run_forever(
    flow: Flow[..., Any],
    deployment_id: UUID,
    stop: threading.Event,
    *,
    poll_seconds: float = 1.0,
    on_done: Callable[[State], None] | None = None,
) -> None:
    """Poll for due runs until `stop` is set; a failing run or API hiccup never ends it."""
    while not stop.is_set():
        try:
            run_due(flow, deployment_id, on_done)
        except Exception:
            log.exception("Warm runner: could not run the due flow runs; trying again")
        stop.wait(poll_seconds)


def start_in_background(
    flow: Flow[..., Any],
    deployment_id: UUID,
    on_done: Callable[[State], None] | None = None,
) -> threading.Event:
    """Start `run_forever` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(
        target=run_forever,
        args=(flow, deployment_id, stop),
        kwargs={"on_done": on_done},
        name=f"warm-runner-{flow.name}",
        daemon=True,
    ).start()
    return stop


def pause_schedule(deployment_id: UUID) -> None:
    """What Prefect's runner does on exit: no runs pile up while nothing serves them."""
    with get_client(sync_client=True) as client:
        client.pause_deployment(deployment_id)
