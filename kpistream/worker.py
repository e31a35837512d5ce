"""The worker: the faust application that runs the stream processors on the Redis store.

faust provides the worker lifecycle, signal handling and logging; the clickstream hot path
is :class:`kpistream.streams.batch_consumer.BatchConsumer`, run here as a service of the app because
faust's per-message streams are too slow for it (see that module).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import faust
from mode import Service

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings
from kpistream.sinks.window_store import WindowStore
from kpistream.streams.batch_consumer import BatchConsumer
from kpistream.streams.logic import StreamLogic
from kpistream.streams.registry import STREAMS, Stream

log = logging.getLogger(__name__)


def credentials(settings: Settings) -> Any:
    """faust's form of the Kafka security settings (None: plaintext)."""
    options = kafka_options(settings)
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=options.get("ssl_context"),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(options["ssl_context"])
    return None


def batch_consumer(
    settings: Settings, logic: StreamLogic | None = None, **options: Any
) -> BatchConsumer:
    """A batch consumer writing to the Redis window store."""
    return BatchConsumer(settings, logic, store=WindowStore.from_settings, **options)


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        f"{settings.consumer_group}-app",
        broker=[f"kafka://{host}" for host in settings.kafka.split(",")],
        broker_credentials=credentials(settings),
        store="memory://",
        web_enabled=False,
        # The app's own group only carries faust's leader topic; keep its joins short.
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_session_timeout=max(6, 2 * settings.rebalance_timeout_s),
        broker_heartbeat_interval=1,
        topic_allow_declare=True,
        topic_partitions=1,
    )

    # One batch consumer per stream of the registry, each in its stream's consumer group.
    for stream in STREAMS:
        _host(app, f"{stream.name.capitalize()}Service", _consumer_of(settings, stream))
    return app


def _consumer_of(settings: Settings, stream: Stream) -> Callable[[], BatchConsumer]:
    def make() -> BatchConsumer:
        return batch_consumer(
            settings,
            stream.logic(settings),
            group_id=stream.group(settings),
            client_id=stream.client_id,
        )

    return make


class BatchService(Service):
    """Runs one batch consumer for as long as the faust worker runs."""

    make: Callable[[], BatchConsumer]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = self.make()

    async def on_start(self) -> None:
        await self.batch.start()

    async def on_stop(self) -> None:
        await self.batch.stop()

    @Service.task
    async def _consume(self) -> None:
        await self.batch.run()


def _host(app: faust.App, name: str, make: Callable[[], BatchConsumer]) -> None:
    # A named subclass per consumer: mode registers a service's tasks per class.
    service = type(name, (BatchService,), {"make": staticmethod(make), "__module__": __name__})
    app.service(service)


#: How long a worker may take to stop after SIGTERM or SIGINT. faust's own stop takes 4-5 s
#: here, but waits without end for a broker or Redis that is gone (a stack stopped all at
#: once, a `kill -9` of `up`): such workers outlived their stacks. An exit at the deadline
#: loses nothing: a batch counts only with its offset, in one atomic step, so the next owner
#: of the partition reads again whatever was not committed. Below `up`'s 10 s before SIGKILL.
SHUTDOWN_DEADLINE_S = 8.0


class Worker(faust.Worker):
    """faust's worker with a deadline on stopping (:data:`SHUTDOWN_DEADLINE_S`)."""

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:
            timer = threading.Timer(SHUTDOWN_DEADLINE_S, _exit_now)
            timer.daemon = True
            timer.start()
        super()._schedule_shutdown(signal)


def _exit_now() -> None:
    log.warning(
        "kpistream worker: not stopped %.0f s after the signal (broker or Redis gone?); "
        "exiting: what was not committed is read again by the partition's next owner",
        SHUTDOWN_DEADLINE_S,
    )
    logging.shutdown()
    os._exit(0)
