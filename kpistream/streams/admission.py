"""Label admission: which raw dimension values (sites, campaigns, landing pages ...) get a
label of their own, decided with the store so every worker agrees (see
:mod:`kpistream.streams.labels` for the budget kept in memory)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from kpistream.config.settings import Settings
from kpistream.contract.store import PartitionStore
from kpistream.streams.labels import LabelBudget
from kpistream.streams.logic import StreamLogic

log = logging.getLogger(__name__)


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

    async def admit_all(self, values: dict[str, set[str]]) -> None:
        """Admit every dimension's values of a batch (or of loaded sessions)."""
        for dimension, found in values.items():
            await self.admit(dimension, self.logic.budget(dimension), found)

    async def admit(self, dimension: str, budget: LabelBudget, values: set[str]) -> None:
        """Decide the labels of values this worker has not seen yet, and every
        ``labels.SYNC_S`` refresh the values in use, retry the folded ones and reload the
        budget (one store call each)."""
        unknown = budget.unknown(values)
        sync = budget.due()
        if not unknown and not sync:
            return
        await self.ask(
            dimension, budget, unknown | budget.sync_values() if sync else unknown, replace=sync
        )

    async def readmit(self) -> None:
        """Put back the label values this worker admitted into a store that lost them, so
        the budgets go on where they were (their values label open sessions here)."""
        for dimension, budget in self.logic.budgets().items():
            if budget.admitted and not budget.allowlist:
                await self.ask(dimension, budget, budget.admitted, replace=False)

    async def ask(
        self, dimension: str, budget: LabelBudget, values: set[str], *, replace: bool
    ) -> None:
        """One admission call for ``values``, its result learned (``replace``: a sync, the
        whole admitted set comes back), and a line when slots were freed or the budget
        filled up."""
        result = await self.store.admit(
            dimension,
            values,
            max_values=budget.max_values,
            now_ms=self.clock_ms(),
            idle_ms=self.settings.label_idle_days * 86_400_000,
        )
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
