"""The stream-to-store contract, below both :mod:`kpistream.streams` and :mod:`kpistream.sinks`:
what one partition batch hands the store (:mod:`.delta`), the visitor record (:mod:`.visitor`),
the service-health fields (:mod:`.health`), time buckets (:mod:`.buckets`) and the Redis key
layout (:mod:`.keys`)."""
