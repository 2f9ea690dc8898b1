"""The warm fork server behind the `cryptolytics` worker type (flows/runtime/warm_worker.py).

A process worker starts `python -m prefect.engine` afresh for every flow run: the imports
(Prefect, dbt, DuckDB, pandas) and a dbt parse, more than the tick's own work here (bench/
measures both). This server pays that once: it imports everything and parses the dbt
project, then waits on a Unix socket. For each flow run, the launcher (flows/runtime/warm_launch.py,
the command Prefect's own process machinery starts) hands over its argv, environment,
working directory and stdio; the server forks, and the child runs exactly what
`python -m prefect.engine` runs, in a copy of this warm process. The child is a process of
its own (its own session, its own exit code; Linux ends it when the server dies):
cancellation, crash detection, logs and artifacts work as they do for the process worker,
through the launcher that stands in for it.

The server runs no Python thread but its main one (a fork copies only the forking thread,
so another thread's held lock would stay held in the child); the native threads some
imports start (pyarrow's pool) are the libraries' own to survive a fork, and the tests run
the real pipeline in the children. It opens no DuckDB file. It answers `cold` before any
fork when our code or the lock changed on disk since it started (then it starts itself
again once idle) or when the run's environment differs in what a process reads only at
start (INTERPRETER_VARIABLES): the launcher then runs that flow run cold.

    python -m flows.runtime.warm_server SOCKET_PATH
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from flows.core.settings import PROJECT_ROOT

HEADER = struct.Struct("!I")  # the length of the JSON request that follows
MAX_REQUEST_BYTES = 4 * 2**20  # an environment, argv and a path: far below this
CODE_DIRS = ("flows", "blocks")
# What a process reads once, at start, and a fork cannot take from the run's environment:
# a run whose values differ goes cold (same for a changed lock: other packages installed).
INTERPRETER_VARIABLES = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONOPTIMIZE", "PYTHONSAFEPATH",
    "LD_PRELOAD", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "OMP_NUM_THREADS",
)  # fmt: skip
KILL_GRACE_SECONDS = 10.0


def code_fingerprint(root: Path = PROJECT_ROOT) -> tuple[tuple[str, int], ...]:
    """What a warm process would miss if it changed: our own Python files' and the lock's
    mtimes (a new lock means other packages may be installed)."""
    files = [path for folder in CODE_DIRS for path in (root / folder).rglob("*.py")]
    files += [path for path in (root / "requirements.lock",) if path.exists()]
    return tuple(sorted((str(path.relative_to(root)), path.stat().st_mtime_ns) for path in files))


def os_threads() -> int:
    """Threads of this process as the kernel counts them (native ones included)."""
    return len(os.listdir("/proc/self/task"))


def deployed_modules(root: Path = PROJECT_ROOT) -> list[str]:
    """The modules of prefect.yaml's entrypoints (`flows/pipeline.py:pipeline` ->
    `flows.pipeline`): what the runs will import, read from where the deployments are
    defined rather than imported here (the runtime sits below the flows)."""
    import yaml

    definition = yaml.safe_load((root / "prefect.yaml").read_text())
    paths = {d["entrypoint"].split(":", 1)[0] for d in definition.get("deployments", [])}
    return sorted(path.removesuffix(".py").replace("/", ".") for path in paths)


def preload() -> None:
    """Import what every flow run needs and parse the dbt project once (local target; the
    cloud target's dbt settings come with its credentials, which a run loads itself)."""
    import dbt.cli.main  # noqa: F401
    import duckdb  # noqa: F401
    import pandas  # noqa: F401
    import prefect.engine
    import prefect.flow_engine  # noqa: F401

    from flows.adapters.dbt_runner import warm_dbt
    from flows.adapters.targets import resolve_target
    from flows.core.settings import get_settings

    for module in deployed_modules():
        importlib.import_module(module)

    settings = get_settings()
    if settings.target == "local":
        target = resolve_target(settings)
        warm_dbt(target, str(settings.dbt_project_dir)).manifest(target.dbt_target, target.dbt_env)


def run_engine_in_child(request: dict[str, object], fds: list[int]) -> int:
    """In the forked child: become the launcher's process (stdio, directory, environment,
    argv) and run the flow run as `python -m prefect.engine` does."""
    import runpy

    os.setsid()  # a group of its own: a kill reaches the run and what it started, only
    _end_with_parent()
    for target_fd, fd in enumerate(fds[:3]):
        os.dup2(fd, target_fd)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
    time.tzset()  # the run's TZ, if it sets one
    sys.argv = ["prefect.engine", *[str(a) for a in list(request["args"])]]  # type: ignore[call-overload]
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()  # the run's PREFECT_* settings, not the server's
    logging.getLogger().handlers.clear()  # dbt's parse added a plain root handler
    setup_logging(incremental=False)  # Prefect's console and API handlers, as a run has them
    # runpy warns that the preload imported prefect.engine already: that is the point
    warnings.filterwarnings("ignore", "'prefect.engine' found in sys.modules", RuntimeWarning)
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
        return 0
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        send_what_prefect_sends_at_exit()
        sys.stdout.flush()
        sys.stderr.flush()


def send_what_prefect_sends_at_exit(timeout: float = 30) -> None:
    """The child ends with `os._exit` (it must not run the server's cleanup), which skips
    the interpreter's shutdown, where Prefect sends the run's last logs and events (the
    dead-letter event among them). Send them here."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (EventsWorker, APILogWorker):
        try:
            service.drain_all(timeout=timeout)
        except Exception:
            traceback.print_exc()


def _end_with_parent() -> None:
    """Linux: SIGTERM this process when the server dies, however it dies (a run in a
    session of its own would otherwise outlive a killed worker)."""
    import ctypes

    pr_set_pdeathsig = 1
    server = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != server:  # it died before we asked
        os._exit(1)


@dataclass
class Job:
    connection: socket.socket
    pid: int
    kill_at: float | None = None  # the launcher went away: SIGKILL the run at this time


@dataclass
class Server:
    path: Path
    fingerprint: tuple[tuple[str, int], ...]  # taken before the preload imported anything
    jobs: dict[int, Job] = field(default_factory=dict)  # by child pid
    stale: bool = False
    stopping: bool = False

    def serve(self) -> None:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)  # only our user may hand us a flow run
        listener.listen(16)
        parent = os.getppid()
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        # The worker stops us (SIGTERM) when it stops; a Ctrl-C meant for it is not ours.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        try:
            while not self.stopping and os.getppid() == parent:  # the worker is gone: stop
                for key, _ in selector.select(timeout=0.2):
                    if key.fileobj is listener:
                        connection, _ = listener.accept()
                        try:  # one request's trouble is its own run's, never the server's
                            self.accept(connection, listener, selector)
                        except Exception as exc:
                            print(f"warm server: refused a request: {exc!r}", file=sys.stderr)
                            connection.close()
                    else:
                        self.launcher_gone(key.fileobj, selector)  # type: ignore[arg-type]
                self.reap(selector)
                if self.stale and not self.jobs:
                    break
        finally:
            listener.close()
            self.path.unlink(missing_ok=True)
            self.stop_jobs()
        if self.stale and not self.stopping and os.getppid() == parent:
            os.execv(sys.executable, [sys.executable, "-m", __spec__.name, str(self.path)])

    def accept(
        self, connection: socket.socket, listener: socket.socket, selector: selectors.BaseSelector
    ) -> None:
        connection.settimeout(5)
        try:
            request, fds = read_request(connection)
        except (OSError, ValueError) as exc:
            print(f"warm server: refused a request: {exc}", file=sys.stderr, flush=True)
            connection.close()
            return
        env = dict(request["env"])  # type: ignore[call-overload]
        changed = [k for k in INTERPRETER_VARIABLES if env.get(k) != os.environ.get(k)]
        if not self.stale and code_fingerprint() != self.fingerprint:
            self.stale = True  # our code changed: restart once idle
        if self.stale or changed:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                send_line(connection, "cold")  # said before any fork: the launcher runs it
            connection.close()
            return
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                listener.close()
                for job in self.jobs.values():
                    job.connection.close()
                connection.close()
                selector.close()
                code = run_engine_in_child(request, fds)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        try:
            send_line(connection, f"pid {pid}")
        except OSError:  # the launcher died after its request: its run must not go on
            signal_job(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            connection.close()
            return
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
        self.jobs[pid] = Job(connection, pid)

    def launcher_gone(self, connection: socket.socket, selector: selectors.BaseSelector) -> None:
        """The launcher never writes after its request: readable means it exited. It passes
        SIGTERM, SIGINT and SIGHUP on, so it was SIGKILLed: what Prefect does to a run it
        wants gone now. Its run goes the same way, at once."""
        try:
            if connection.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        selector.unregister(connection)
        for job in self.jobs.values():
            if job.connection is connection and job.kill_at is None:
                signal_job(job.pid, signal.SIGKILL)
                job.kill_at = time.monotonic()

    def reap(self, selector: selectors.BaseSelector) -> None:
        for pid, job in list(self.jobs.items()):
            if job.kill_at is not None and time.monotonic() > job.kill_at:
                signal_job(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            del self.jobs[pid]
            with contextlib.suppress(OSError):  # the launcher may be gone
                send_line(job.connection, f"exit {os.waitstatus_to_exitcode(status)}")
            if job.kill_at is None:
                selector.unregister(job.connection)
            job.connection.close()

    def stop_jobs(self) -> None:
        for pid in self.jobs:
            signal_job(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        while self.jobs and time.monotonic() < deadline:
            for pid in list(self.jobs):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    self.jobs.pop(pid).connection.close()
            time.sleep(0.1)
        for pid in self.jobs:
            signal_job(pid, signal.SIGKILL)


def signal_job(pid: int, signum: int) -> None:
    """The child leads its own session: its whole group (DuckDB, dbt, any subprocess)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def read_request(connection: socket.socket) -> tuple[dict[str, object], list[int]]:
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request carries stdin, stdout and stderr")
    try:
        if len(data) < HEADER.size:
            raise ValueError("short request")
        (length,) = HEADER.unpack(data[: HEADER.size])
        if length > MAX_REQUEST_BYTES:
            raise ValueError(f"request of {length} bytes")
        body = data[HEADER.size :]
        while len(body) < length:
            chunk = connection.recv(length - len(body))
            if not chunk:
                raise ValueError("request cut short")
            body += chunk
        request = json.loads(body)
        if not (
            isinstance(request, dict)
            and isinstance(request.get("args"), list)
            and all(isinstance(a, str) for a in request["args"])
            and isinstance(request.get("env"), dict)
            and all(isinstance(v, str) for v in request["env"].values())
            and isinstance(request.get("cwd"), str)
        ):
            raise ValueError("a request has args (strings), env (strings) and cwd")
        return request, fds
    except Exception:
        for fd in fds:
            os.close(fd)
        raise


def send_line(connection: socket.socket, line: str) -> None:
    connection.setblocking(True)
    connection.sendall(line.encode() + b"\n")


def main() -> None:
    path = Path(sys.argv[1])
    started = time.perf_counter()
    fingerprint = code_fingerprint()  # before the preload: an edit during it counts
    preload()
    if threading.active_count() > 1:  # forking would copy a Python thread's held locks
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        raise SystemExit(f"warm server: threads after preload ({names}); not forking from it")
    print(
        f"Warm worker ready in {time.perf_counter() - started:.1f}s (imports and dbt parse "
        f"done; {os_threads()} OS threads, {threading.active_count()} of them Python's)",
        flush=True,
    )
    Server(path, fingerprint).serve()


if __name__ == "__main__":
    main()
