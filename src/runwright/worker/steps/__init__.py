"""The multi-step engine (``job.yaml`` packages) and its step actions."""
