"""Uploads: streamed through the API, direct to storage, and transcripts."""
