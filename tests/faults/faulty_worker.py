"""The real worker (``kpistream worker``) with one fault at an exact point of its commit path.

Run as ``python -m tests.faults.faulty_worker`` with ``FAULT=<action>:<n>[:social]``; at the
clickstream consumer's (or with ``:social``, the social consumer's) n-th atomic step:

- ``kill-before``: SIGKILL just before the step (the batch is decoded, folded and its dead
  letters sent, nothing of it is in Redis);
- ``kill-after``: SIGKILL just after the step returned (the batch is in Redis, the worker has
  not moved its own position, nor Kafka's committed offset);
- ``stop-before``: SIGSTOP just before the step: a zombie holding a batch ready to commit,
  until the test sends SIGCONT.

Only the test harness patches the class; the production worker has no fault hooks.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from kpistream.cli import main
from kpistream.streams.batch_consumer import BatchConsumer

ACTIONS = {"kill-before", "kill-after", "stop-before"}


def install(action: str, at: int, stream: str) -> None:
    assert action in ACTIONS and at >= 1 and stream in ("clickstream", "social"), (action, at)
    original = BatchConsumer._commit
    steps = 0

    async def commit(
        self: BatchConsumer, owned: Any, delta: Any, next_offset: int, **kwargs: Any
    ) -> None:
        nonlocal steps
        if self.topic != getattr(self.settings, f"{stream}_topic"):
            return await original(self, owned, delta, next_offset, **kwargs)
        steps += 1
        if steps == at and action == "kill-before":
            os.kill(os.getpid(), signal.SIGKILL)
        if steps == at and action == "stop-before":
            os.kill(os.getpid(), signal.SIGSTOP)
        await original(self, owned, delta, next_offset, **kwargs)
        if steps == at and action == "kill-after":
            os.kill(os.getpid(), signal.SIGKILL)

    BatchConsumer._commit = commit  # type: ignore[method-assign]


if __name__ == "__main__":
    action, at, *stream = os.environ["FAULT"].split(":")
    install(action, int(at), *stream or ["clickstream"])
    sys.exit(main(["worker"]))
