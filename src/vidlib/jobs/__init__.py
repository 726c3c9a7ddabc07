"""Jobs: work users ask for on their videos, run by the background worker."""
