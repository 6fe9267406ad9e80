"""Declaring side effects and writing them in the caller's transaction; replay and discard.
Never runs a side effect."""
