"""Use cases shared by the REST API, the CLI, the web UI and the Python client."""
