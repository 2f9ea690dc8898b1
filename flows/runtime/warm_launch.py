"""The command the `cryptolytics` worker starts for a flow run, in place of
`python -m prefect.engine`: it hands the run to the warm server (flows/runtime/warm_server.py) and
stands in for it until it ends: same exit code, signals passed on. Only the standard
library is imported, so it starts in milliseconds.

Cold or warm, a run runs once:
- no server to take the run (not started, gone, the connection refused or reset before it
  answered), or a server that says `cold` (our code changed since it started, or the run's
  environment differs where a warm process cannot follow): this process becomes
  `python -m prefect.engine` itself, a cold run;
- the server closed the connection without a word after taking the request: it may have
  forked the run already, so this exits 1 (Prefect reports the run crashed) rather than
  risk running it twice.

    python -m flows.runtime.warm_launch SOCKET_PATH [ENGINE_ARGS...]
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
from typing import TextIO

HEADER = struct.Struct("!I")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def cold(args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *args])


def hand_over(path: str, args: list[str]) -> tuple[socket.socket, TextIO, list[str]]:
    """Send the request; the server's first answer (`pid N`, `cold`, or [] for none)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    body = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(connection, [HEADER.pack(len(body)) + body], [0, 1, 2])
    answers = connection.makefile("r", encoding="ascii")
    return connection, answers, answers.readline().split()


def main() -> None:
    path, args = sys.argv[1], sys.argv[2:]
    # A session of our own, as Prefect gives a run's process when it isolates it: a Ctrl-C
    # or SIGTERM for the worker's whole group reaches the worker, which then stops us.
    if os.getpid() != os.getsid(0):
        os.setsid()
    try:
        connection, answers, first = hand_over(path, args)
    except OSError:  # no server, or reset before it accepted us: nothing was started
        cold(args)
    if first == ["cold"]:
        connection.close()
        cold(args)
    if len(first) != 2 or first[0] != "pid":
        print("warm server closed the connection; the run may have started", file=sys.stderr)
        sys.exit(1)
    child = int(first[1])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    try:
        last = answers.readline().split()
    except OSError:
        last = []
    if len(last) != 2 or last[0] != "exit":  # the server died: so did the run (it ends with it)
        sys.exit(1)
    code = int(last[1])
    if code < 0:  # killed by a signal: end the same way, so the worker reports it so
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


if __name__ == "__main__":
    main()
