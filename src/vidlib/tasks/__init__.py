"""Background work: the queue and the tasks the worker runs."""
