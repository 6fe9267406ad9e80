"""The relay: due jobs, lost messages and expired leases, one pass at a time."""
