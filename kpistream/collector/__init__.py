"""The HTTP edge: trackers in, events to Kafka, privacy at the door."""
