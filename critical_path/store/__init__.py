"""Every statement that bypasses the ORM at run time: compiled once per database from the ORM's own
expressions (the ORM verb on ``JobQuerySet`` is the definition; this part compiles it)."""
