"""The real worker (``kpistream worker``) with one fault at an exact point of its commit path.

Run as ``python -m tests.faults.faulty_worker`` with ``FAULT=<action>:<n>[:social]``; at the
clickstream consumer's (or with ``:social``, the social consumer's) n-th atomic step:

- ``kill-before``: SIGKILL just before the step (the batch is decoded, folded and its dead
  letters sent, nothing of it is in Redis);
- ``kill-after``: SIGKILL just after the step returned (the batch is in Redis, the worker has
  not moved its own position, nor Kafka's committed offset);
- ``stop-before``: SIGSTOP just before the step: a zombie holding a batch ready to commit,
  until the test sends SIGCONT.

The harness wraps the consumer's commit step (``BatchConsumer.pipeline.commit``); the
production worker has no fault hooks.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from kpistream import worker
from kpistream.cli import main
from kpistream.contract.delta import BatchDelta
from kpistream.streams.batch_consumer import BatchConsumer
from kpistream.streams.ownership import Owned
from kpistream.streams.steps import Commit

ACTIONS = {"kill-before", "kill-after", "stop-before"}


class Faulty:
    """The consumer's commit step, wrapped: the fault strikes at its ``at``-th call."""

    def __init__(self, commit: Commit, action: str, at: int) -> None:
        self.commit, self.action, self.at = commit, action, at
        self.steps = 0

    async def __call__(
        self, owned: Owned, delta: BatchDelta, next_offset: int, **kwargs: Any
    ) -> None:
        self.steps += 1
        strike = self.steps == self.at
        if strike and self.action == "kill-before":
            os.kill(os.getpid(), signal.SIGKILL)
        if strike and self.action == "stop-before":
            os.kill(os.getpid(), signal.SIGSTOP)
        await self.commit(owned, delta, next_offset, **kwargs)
        if strike and self.action == "kill-after":
            os.kill(os.getpid(), signal.SIGKILL)


def install(action: str, at: int, stream: str) -> None:
    """Make the worker's consumers of ``stream`` wrap their commit step at start."""
    assert action in ACTIONS and at >= 1 and stream in ("clickstream", "social"), (action, at)
    build = worker.batch_consumer

    def faulty(*args: Any, **options: Any) -> BatchConsumer:
        consumer = build(*args, **options)
        if consumer.topic == getattr(consumer.settings, f"{stream}_topic"):
            start = consumer.start

            async def start_wrapped() -> None:
                await start()
                assert consumer.pipeline is not None
                pipeline = consumer.pipeline
                pipeline.commit = Faulty(pipeline.commit, action, at)  # type: ignore[assignment]

            consumer.start = start_wrapped  # type: ignore[method-assign]
        return consumer

    worker.batch_consumer = faulty


if __name__ == "__main__":
    action, at, *stream = os.environ["FAULT"].split(":")
    install(action, int(at), *stream or ["clickstream"])
    sys.exit(main(["worker"]))
