"""Where results go: the Redis window store and the Prometheus exporter."""
