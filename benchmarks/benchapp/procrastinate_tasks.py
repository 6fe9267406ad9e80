"""The signup's three side effects as procrastinate tasks (imported only when procrastinate is installed)."""

from procrastinate.contrib.django import app


@app.task(queue="bench", name="bench.send_welcome_email")
def send_welcome_email(signup_id: int) -> None: ...


@app.task(queue="bench", name="bench.sync_crm")
def sync_crm(signup_id: int) -> None: ...


@app.task(queue="bench", name="bench.recompute_stats")
def recompute_stats() -> None: ...
