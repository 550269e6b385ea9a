"""The operator's engine room: a deduplicating work queue, workers and leader election."""
