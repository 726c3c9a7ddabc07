"""``Idempotency-Key``: a retried write returns the first result."""
