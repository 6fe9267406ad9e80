"""Stand-ins for the outside world the example's side effects talk to, each run as its own process."""
