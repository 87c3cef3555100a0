"""The worker side: tasks (a separation's run), exports (custom mixes), worker (the RQ worker class
with models loaded before forks) and reconcile (the database's truth imposed on RQ)."""
