"""Signals sent after a job's outcome is recorded. ``sender`` is ``Job``; they carry ``job`` (and ``error``)."""

from django.dispatch import Signal

#: A job's side effect returned; ``job`` is the job as recorded.
job_succeeded = Signal()
#: A job's side effect raised and it will be retried; ``job``, ``error`` (the exception).
job_failed = Signal()
#: A job was dead-lettered (attempts exhausted or ``PermanentFailure``); ``job``, ``error``.
job_dead_lettered = Signal()
