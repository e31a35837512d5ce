"""What the tests share, in one place: the stack fixtures (:mod:`.stack`, registered once by
``tests/conftest.py``), event builders (:mod:`.factories`), waits with deadlines
(:mod:`.waits`), hand-computed event fixtures (:mod:`.known_events`, :mod:`.kpi_events`)
and an in-loop collector (:mod:`.collector_server`)."""
