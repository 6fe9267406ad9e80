import threading

import pytest

from example_project.services.crm import CRM, Server


@pytest.fixture
def crm(settings):
    """The example's fake CRM on a free port, in a thread: no latency, no failures unless a test sets them."""
    server = Server(("127.0.0.1", 0), CRM(latency=0, failure_rate=0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.CRM_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.CRM_CONNECT_TIMEOUT = settings.CRM_READ_TIMEOUT = 5
    yield server.crm
    server.shutdown()
    server.server_close()
