"""kpistream: real-time marketing KPIs from Kafka to Redis to Prometheus."""

__version__ = "0.1.0"
