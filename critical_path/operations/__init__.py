"""What people do and read: the admin's and the commands' selections, replays, pruning, stats,
the dashboard and the health report."""
