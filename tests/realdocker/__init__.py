"""The real-daemon tier: the Docker target applied to a real dockerd (make test-docker)."""
