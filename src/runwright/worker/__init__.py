"""Workers: claim runs, execute them, heartbeat, and record how they ended."""
