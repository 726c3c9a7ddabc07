"""Logs, metrics, request ids and health checks."""
