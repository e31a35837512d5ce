"""SMART goals and what is generated from them and the KPI catalogue: PromQL formulas
(:mod:`.formulas`), Prometheus rules (:mod:`.rules`) and Grafana dashboards
(:mod:`.dashboards`). Above the stream and the store, below the CLI."""
