"""The warm runner: due runs of a deployment run in this process, the newest only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Scheduled

from flows.warm_runner import pause_schedule, run_due

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_server")]

ran: list[int] = []


@flow(name="warm-runner-probe")
def probe(n: int = 0) -> int:
    ran.append(n)
    return n * 2


def test_the_newest_due_run_runs_here_and_older_ones_are_superseded() -> None:
    deployment_id = probe.to_deployment(name="probe").apply()
    now = datetime.now(tz=UTC)
    with get_client(sync_client=True) as client:
        runs = [
            client.create_flow_run_from_deployment(
                deployment_id,
                parameters={"n": n},
                state=Scheduled(scheduled_time=now - timedelta(minutes=10 - n)),
            )
            for n in range(3)
        ]
        later = client.create_flow_run_from_deployment(
            deployment_id, state=Scheduled(scheduled_time=now + timedelta(hours=1))
        )
    finished = []

    assert run_due(probe, deployment_id, on_done=finished.append) == 1

    assert ran == [2]  # the newest due run, in this very process
    assert finished[0].is_completed() and finished[0].result() == 4
    with get_client(sync_client=True) as client:
        states = [client.read_flow_run(run.id).state for run in [*runs, later]]
        assert [s.type.value for s in states] == [
            "CANCELLED",
            "CANCELLED",
            "COMPLETED",
            "SCHEDULED",
        ]
        assert "Superseded by the newer due run" in states[0].message
        assert run_due(probe, deployment_id) == 0  # nothing due any more

        pause_schedule(deployment_id)
        assert client.read_deployment(deployment_id).paused
