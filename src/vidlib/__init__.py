"""vidlib: a video library service on S3."""
