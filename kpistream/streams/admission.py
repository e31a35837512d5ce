"""Label admission: which raw dimension values (sites, campaigns, landing pages ...) get a
label of their own, decided with the store so every worker agrees (see
:mod:`kpistream.streams.labels` for the budget kept in memory)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kpistream.config.settings import Settings
from kpistream.contract.store import Admission, AdmitRequest, PartitionStore
from kpistream.streams.labels import LabelBudget
from kpistream.streams.logic import StreamLogic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    """An admission the store is asked for; ``replace``: a sync, the whole admitted set
    comes back."""

    budget: LabelBudget
    request: AdmitRequest
    replace: bool


class LabelAdmission:
    """Asks the store to admit values into a dimension's budget, and learns the answer."""

    def __init__(
        self,
        settings: Settings,
        logic: StreamLogic,
        store: PartitionStore,
        clock_ms: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.logic = logic
        self.store = store
        self.clock_ms = clock_ms
        #: one admission at a time: a sync's answer replaces the admitted set, so another
        #: partition's admission must not fall between its request and its learning
        self.lock = asyncio.Lock()

    def pending(self, values: dict[str, set[str]]) -> list[Pending]:
        """What to ask the store for a batch's (or loaded sessions') dimension values: the
        values this worker has not decided yet, and every ``labels.SYNC_S`` the values in use
        (refreshed), the folded ones (retried) and the whole budget (reloaded)."""
        asks: list[Pending] = []
        for dimension, found in values.items():
            budget = self.logic.budget(dimension)
            unknown = budget.unknown(found)
            sync = budget.due()
            if unknown or sync:
                wanted = unknown | budget.sync_values() if sync else unknown
                request = AdmitRequest(dimension, wanted, budget.max_values)
                asks.append(Pending(budget, request, replace=sync))
        return asks

    def learn(self, asked: list[Pending], answers: list[Admission]) -> None:
        """Learn the store's answers: after this, every asked value has its label."""
        for pending, answer in zip(asked, answers, strict=True):
            self._learned(pending, answer)

    @property
    def idle_ms(self) -> int:
        return self.settings.label_idle_days * 86_400_000

    async def admit_all(self, values: dict[str, set[str]]) -> None:
        """Admit every dimension's values of loaded sessions (a batch's values are admitted
        with its visitors, in :class:`kpistream.streams.steps.Enrich`)."""
        async with self.lock:
            for pending in self.pending(values):
                await self.ask(pending)

    async def readmit(self) -> None:
        """Put back the label values this worker admitted into a store that lost them, so
        the budgets go on where they were (their values label open sessions here)."""
        async with self.lock:
            for dimension, budget in self.logic.budgets().items():
                if budget.admitted and not budget.allowlist:
                    request = AdmitRequest(dimension, set(budget.admitted), budget.max_values)
                    await self.ask(Pending(budget, request, replace=False))

    async def ask(self, pending: Pending) -> None:
        """One admission call, its result learned."""
        request = pending.request
        result = await self.store.admit(
            request.dimension,
            request.values,
            max_values=request.max_values,
            now_ms=self.clock_ms(),
            idle_ms=self.idle_ms,
        )
        self._learned(pending, result)

    def _learned(self, pending: Pending, result: Admission) -> None:
        """Learn one answer, with a line when slots were freed or the budget filled up."""
        budget, replace, dimension = pending.budget, pending.replace, pending.request.dimension
        was_full = budget.full
        budget.learn(result.members, full=len(result.members) >= budget.max_values, replace=replace)
        if result.freed:
            log.info(
                "labels of %s: %d values unseen for %d days gave up their slots",
                dimension,
                result.freed,
                self.settings.label_idle_days,
            )
        if budget.full and not was_full:
            log.warning(
                "labels of %s: the budget of %d values is full; new values fold into 'other' "
                "until a value is unseen for %d days (KPISTREAM_LABEL_IDLE_DAYS), the budget "
                "grows (KPISTREAM_MAX_*), or `kpistream labels reset %s`",
                dimension,
                budget.max_values,
                self.settings.label_idle_days,
                dimension,
            )
