"""Stream processing: the faust app, the batch hot path, sessionization and KPI deltas."""
