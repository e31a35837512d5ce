"""The streams' topics, and the running stacks: each writes a small JSON file under the state
directory so that ``kpistream produce`` and ``kpistream down`` find it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kpistream.config.connections import kafka_options
from kpistream.config.settings import Settings
from kpistream.runtime.processes import UserError
from kpistream.streams.registry import STREAMS

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, *, timeout_s: float = 10.0) -> None:
    """Create the topics if missing; a missing broker becomes one UserError line."""
    admin = AIOKafkaAdminClient(**kafka_options(settings), request_timeout_ms=5000)
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # the one line below says it better than its traces
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await admin.close()
        raise UserError(
            f"cannot reach Kafka at {settings.kafka} ({type(exc).__name__}); "
            "start a broker or set KPISTREAM_KAFKA / --kafka"
        ) from None
    finally:
        kafka_log.setLevel(level)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            *(NewTopic(s.topic(settings), s.partitions(settings), 1) for s in STREAMS),
            NewTopic(
                settings.deadletter_topic,
                1,
                1,
                topic_configs={
                    "retention.ms": str(settings.deadletter_retention_days * 86_400_000)
                },
            ),
        ]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


# -- stack discovery ------------------------------------------------------------------------


@dataclass
class StackInfo:
    pid: int
    kafka: str
    redis: str  # with its password: the file is its owner's alone
    metrics_url: str
    started: float
    pgid: int = 0  # the children's process group


def state_dir() -> Path:
    base = os.environ.get("KPISTREAM_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    return (root if os.environ.get("KPISTREAM_STATE_DIR") else root / "kpistream") / "stacks"


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


@contextlib.contextmanager
def published(info: StackInfo) -> Iterator[Path]:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{info.pid}.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(asdict(info)))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def running_stack() -> StackInfo | None:
    """The newest live stack started by `kpistream up`/`demo`, if any."""
    return max(running_stacks(), key=lambda s: s.started, default=None)


def running_stacks() -> list[StackInfo]:
    """Every live stack started by `kpistream up`/`demo` under the state directory."""
    directory = state_dir()
    stacks: list[StackInfo] = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        try:
            info = StackInfo(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if alive(info.pid):
            stacks.append(info)
        else:
            path.unlink(missing_ok=True)
    return stacks


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="kpistream-"))
