"""The `runwright` command line."""
