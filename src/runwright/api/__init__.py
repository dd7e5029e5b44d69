"""The REST API: ``create_app(runtime)`` builds it; nothing happens at import time."""
