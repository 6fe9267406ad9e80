"""Run the example: migrate, start a Celery worker and the relay, then serve the signup page.

python -m example_project.demo            # http://127.0.0.1:8000/ until Ctrl-C
python -m example_project.demo --smoke    # sign one account up, wait for its email, exit
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--smoke", action="store_true", help="sign up one account, wait for its side effect, exit")
    options = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], check=True, cwd=ROOT)
    background = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "example_project", "worker", "-c", "2", "-l", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, start_new_session=True,
        ),
        subprocess.Popen([*manage, "relay_outbox", "--interval", "2"], cwd=ROOT, start_new_session=True),
    ]  # fmt: skip
    try:
        if options.smoke:
            return smoke()
        print(f"\n  Sign up at http://127.0.0.1:{options.port}/  (Ctrl-C to stop)\n", flush=True)
        return subprocess.call([*manage, "runserver", "--noreload", f"127.0.0.1:{options.port}"], cwd=ROOT)
    except KeyboardInterrupt:
        return 0
    finally:
        for process in background:
            process.send_signal(signal.SIGTERM)
        for process in background:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def smoke() -> int:
    import django

    django.setup()
    from django.test import Client

    from example_project.signups.models import WelcomeEmail

    email = f"demo-{int(time.time() * 1000)}@example.com"
    started = time.monotonic()
    response = Client().post("/", {"email": email}, HTTP_HOST="localhost")
    answered = time.monotonic() - started
    assert response.status_code == 302, response.status_code
    deadline = time.monotonic() + 60
    while not WelcomeEmail.objects.filter(account__email=email).exists():
        if time.monotonic() > deadline:
            print("the welcome email did not arrive within 60 s", file=sys.stderr)
            return 1
        time.sleep(0.1)
    print(f"signup answered in {answered * 1000:.1f} ms; welcome email sent {time.monotonic() - started:.2f} s later")
    return 0


if __name__ == "__main__":
    sys.exit(main())
