"""The command the `cryptolytics` worker starts for a flow run, in place of
`python -m prefect.engine`: it hands the run to the warm server (flows/warm_server.py) and
stands in for it until it ends: same exit code, signals passed on. Only the standard
library is imported, so it starts in milliseconds. With no warm server to take the run
(not started yet, gone, or our code changed since it started) it becomes
`python -m prefect.engine` itself: a cold run, never a lost one.

    python -m flows.warm_launch SOCKET_PATH [ENGINE_ARGS...]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!I")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def cold(args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *args])


def main() -> None:
    path, args = sys.argv[1], sys.argv[2:]
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
    except OSError:
        cold(args)
    body = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(connection, [HEADER.pack(len(body)) + body], [0, 1, 2])
    answers = connection.makefile("r", encoding="ascii")
    first = answers.readline().split()
    if not first or first[0] != "pid":  # "stale", or the server went away
        connection.close()
        cold(args)
    child = int(first[1])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    last = answers.readline().split()
    if len(last) != 2 or last[0] != "exit":  # the server died: so did the run
        sys.exit(1)
    code = int(last[1])
    if code < 0:  # killed by a signal: end the same way, so the worker reports it so
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
