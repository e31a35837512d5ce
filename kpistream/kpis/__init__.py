"""Leaf layer: the KPI catalogue (:mod:`.catalogue`) and the names of counter fields in Redis
(:mod:`.fields`). Imports nothing of kpistream."""
