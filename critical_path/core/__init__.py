"""Needed by three or more parts: the registry, argument rules, the job context, correlation ids, the
database's clock and crash points. Imports only conf, exceptions and models."""
