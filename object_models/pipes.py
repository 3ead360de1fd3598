"""Command-line tools that stop quietly when the reader of their output goes away.

``lwm2m-models list | head -1``: ``head`` exits after one line, the tool's next write to the
pipe fails with EPIPE, and Python (which ignores SIGPIPE) raises ``BrokenPipeError`` — by
default a traceback on stderr and exit status 1 (or 120 when it only surfaces while flushing
at exit). The reader chose to stop reading; that is not the tool's failure, so every console
entry point is wrapped in ``quiet_on_broken_pipe``: it stops without a traceback and exits 0.

It lives here, in the lowest layer, so that every package's CLI (object_models, keystore, both
servers, the demo client) uses the one implementation.
"""

from __future__ import annotations

import functools
import os
import select
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


def quiet_on_broken_pipe(main: Callable[P, int]) -> Callable[P, int]:
    """Wrap a ``main() -> exit status``: a ``BrokenPipeError`` from writing to stdout ends it
    with status 0 and nothing on stderr. stdout is flushed inside the wrapper, so an error
    that would only appear at interpreter exit is caught too. A ``BrokenPipeError`` that is
    not stdout's (a socket, a subprocess) still propagates."""

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            if not stdout_reader_gone():
                raise
            _discard_stdout()
            return 0
        return status

    return wrapper


def stdout_reader_gone() -> bool:
    """Has the read end of stdout's pipe been closed? (poll reports POLLERR on a pipe's write
    end once every reader is gone.) Where that cannot be asked (no ``poll``, stdout without a
    file descriptor) the answer is True: stdout is by far the likeliest broken pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return True
    poll = getattr(select, "poll", None)
    if poll is None:
        return True
    poller = poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return True
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the flush at interpreter exit (of whatever is still
    buffered) does not raise a second time, outside any handler."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass
