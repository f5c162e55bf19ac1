"""What a process pays for at start: the SCIM face's library only once SCIM is used
(decision 0077)."""

from __future__ import annotations

import subprocess
import sys

from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.api.app import create_app
from groupd.api.context import AppContext


def test_building_the_app_does_not_import_the_scim_library() -> None:
    probe = (
        "import sys\n"
        "from groupd.api.app import all_endpoints\n"
        "routes = [e.path for e in all_endpoints() if e.path.startswith('/scim/v2/')]\n"
        "assert len(routes) > 10, routes\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('scim2_models', "
        "'groupd.api.scim.handlers', 'groupd.services.provisioning.filters')))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_the_first_scim_request_imports_its_handlers(
    context: AppContext, acme: TenantFixture
) -> None:
    app = create_app(context=context, start_worker=False)
    with TestClient(app) as client:
        answer = client.get("/scim/v2/Users", headers=acme.admin.headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
