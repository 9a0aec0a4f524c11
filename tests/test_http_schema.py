"""``/openapi.json`` is true: schemathesis against the live API (issue 12).

Every operation (but the endless event stream, tested in test_http_api.py), with and
without a token: no 5xx, status codes, content types and bodies as the document says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .http_helpers import served

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _run(url: str, schema: Path, headers: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [str(SCHEMATHESIS), "run", str(schema), "--url", url]
    command += [
        "--checks",
        "all",
        "--exclude-checks",
        "use_after_free,ensure_resource_availability",
    ]
    command += ["--exclude-path", "/v1/events", "-n", "10", "--seed", "1", "--no-color"]
    command += ["--phases", "examples,coverage,fuzzing", "--request-timeout", "30"]
    command = [
        command[0],
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        *command[1:],
    ]
    for header in headers:
        command += ["-H", header]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp)


@pytest.mark.slow
def test_the_live_api_matches_its_openapi_document(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with served(home) as (_proc, url, token):
        response = httpx.get(f"{url}/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        schema = tmp_path / "openapi.json"
        schema.write_bytes(response.content)
        with_token = _run(url, schema, [f"Authorization: Bearer {token}"], tmp_path)
        assert with_token.returncode == 0, with_token.stdout[-6000:]
        without = _run(url, schema, [], tmp_path)
        assert without.returncode == 0, without.stdout[-6000:]
