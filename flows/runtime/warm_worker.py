"""The `cryptolytics` worker type: Prefect's process worker, with warm flow runs.

Registered through Prefect's plugin entry point (`prefect.collections` in pyproject.toml),
so the production command is Prefect's own:

    prefect work-pool create cryptolytics --type cryptolytics   # make deploy does this
    prefect worker start --pool cryptolytics

Everything a process worker does stays Prefect's code: polling, heartbeats, concurrency
limits, cancellation, crash detection, logs. What differs is the command a flow run starts
with: `python -m flows.runtime.warm_launch` instead of `python -m prefect.engine`, which hands the
run to a warm fork server this worker starts beside itself (flows/runtime/warm_server.py), so a run
starts with Prefect, dbt and DuckDB imported and the dbt project parsed. Setting a command
takes Prefect's branch for a configured `command` job variable: the worker starts the
launcher without its workspace supervisor and in its own process group, so the launcher
makes a session of its own (as Prefect does for its default command). A pool's or
deployment's own `command` is left alone (that run goes cold). Linux only (the server needs
`prctl`); elsewhere this worker is Prefect's process worker.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prefect.utilities.processutils import command_to_string
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import Flow as APIFlow
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

WORKER_TYPE = "cryptolytics"
SERVER_READY_SECONDS = 120.0  # imports and a dbt parse on 2 loaded cores; runs go cold before


class WarmJobConfiguration(ProcessJobConfiguration):
    # the warm server of the worker in this process (set while the worker runs)
    socket_path: ClassVar[Path | None] = None

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        if self.command is None and self.socket_path is not None:
            self.command = command_to_string(
                [sys.executable, "-m", "flows.runtime.warm_launch", str(self.socket_path)]
            )
        super().prepare_for_flow_run(
            flow_run, deployment, flow, work_pool, worker_name, worker_id=worker_id
        )


class WarmProcessWorker(ProcessWorker):
    type = WORKER_TYPE
    job_configuration = WarmJobConfiguration
    _description = (
        "Cryptolytics' process worker: each flow run is a process of its own, forked from "
        "a warm one (imports done, dbt parsed) instead of started cold."
    )
    _display_name = "Cryptolytics (warm process)"
    _documentation_url = "https://github.com/cryptolytics/cryptolytics#run-it-in-production"

    _server: subprocess.Popen[bytes] | None = None
    _server_dir: str | None = None

    async def setup(self) -> None:
        await super().setup()
        if not sys.platform.startswith("linux"):
            self._logger.warning("Warm flow runs need Linux: runs start cold here.")
            return
        self._server_dir = tempfile.mkdtemp(prefix="cryptolytics-warm-")
        path = Path(self._server_dir) / "server.sock"
        self._start_server(path)
        WarmJobConfiguration.socket_path = path
        await self._wait_until_ready(path)

    def _start_server(self, path: Path) -> None:
        self._server = subprocess.Popen(  # its output is the worker's
            [sys.executable, "-m", "flows.runtime.warm_server", str(path)],
            start_new_session=True,  # a Ctrl-C for the worker's group is the worker's to act on
        )

    async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> Any:
        """Prefect's process worker's run; first, a warm server that died is started again
        (this run goes cold, the next ones are warm)."""
        path = WarmJobConfiguration.socket_path
        if self._server is not None and self._server.poll() is not None and path is not None:
            self._logger.warning(
                "The warm server exited (code %s); starting it again.", self._server.returncode
            )
            self._start_server(path)
        return await super().run(flow_run, configuration, task_status)

    async def _wait_until_ready(self, path: Path) -> None:
        """Runs that come before the server is ready go cold; waiting here keeps the first
        tick warm too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SERVER_READY_SECONDS
        while loop.time() < deadline and not path.exists():
            if self._server is None or self._server.poll() is not None:
                self._logger.warning("The warm server stopped: flow runs start cold.")
                return
            await asyncio.sleep(0.2)

    async def teardown(self, *exc_info: Any) -> None:
        try:
            await super().teardown(*exc_info)  # waits for the runs in flight
        finally:
            WarmJobConfiguration.socket_path = None
            if self._server is not None and self._server.poll() is None:
                self._server.terminate()
                try:
                    await asyncio.to_thread(self._server.wait, 30)
                except subprocess.TimeoutExpired:
                    self._server.kill()
            if self._server_dir is not None:
                shutil.rmtree(self._server_dir, ignore_errors=True)
