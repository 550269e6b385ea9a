"""Pure TrainingSession logic: capacity admission, queue order, preemption, restart backoff."""
