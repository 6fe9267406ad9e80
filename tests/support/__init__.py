"""What test suites share beyond fixtures: real processes (workers, relays, emitters) started and stopped.

Modules here import nothing from ``tests.faults``; the fault-injection suite builds on them.
"""
