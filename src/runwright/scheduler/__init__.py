"""Background upkeep: recovery of dead workers' runs (cron firing comes later)."""
