"""APScheduler in the serve process: fires the scheduled jobs and the node's own chores."""
