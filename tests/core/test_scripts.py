"""The developer commands' building blocks, and the edge served over real HTTP."""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow

from api.core.auth_tokens import TokenVerifier
from scripts.devenv import load_dev_env, write_dev_env
from scripts.migrate import REPO
from scripts.pg_cluster import throwaway_cluster
from scripts.postgres import database_url
from scripts.token import mint
from tests.factories.workspaces import create_user


def test_database_url_keeps_the_server_and_swaps_the_database() -> None:
    assert (
        database_url("postgresql://postgres@127.0.0.1:5432/postgres", "growthbase_dev")
        == "postgresql://postgres@127.0.0.1:5432/growthbase_dev"
    )
    assert (
        database_url("postgresql://postgres:@/postgres?host=/srv/pg sock", "x")
        == "postgresql://postgres:@/x?host=/srv/pg sock"
    )
    assert "dbname=x" in database_url("host=10.0.0.1 user=u dbname=postgres", "x")


def test_dev_env_round_trips_values_with_spaces_and_keeps_its_secret(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    conninfo = "host=/tmp/pg sock user=postgres dbname=growthbase_dev"
    first = write_dev_env(conninfo, path)
    second = write_dev_env("postgresql://postgres@127.0.0.1/growthbase_dev", path)
    assert load_dev_env(path)["DATABASE_URL"] == "postgresql://postgres@127.0.0.1/growthbase_dev"
    assert first["DATABASE_URL"] == conninfo
    assert second["SUPABASE_JWT_SECRET"] == first["SUPABASE_JWT_SECRET"]
    assert len(first["SUPABASE_JWT_SECRET"]) >= 32
    assert path.stat().st_mode & 0o077 == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_the_edge_serves_a_minted_token_over_real_http(
    database_url: str, conn: psycopg.Connection[DictRow]
) -> None:
    """What scripts/dev runs: uvicorn with api.index:app configured from the environment."""
    user = create_user(conn, full_name="Curl User")
    secret = "dev-secret-for-this-test-only-0123456789"
    supabase_url = "http://127.0.0.1:54321"
    token = mint(user_id=user.id, email=user.email, supabase_url=supabase_url, secret=secret)
    assert TokenVerifier(supabase_url=supabase_url, jwt_secret=secret).verify(token).user_id == (
        user.id
    )
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SUPABASE_URL": supabase_url,
        "SUPABASE_JWT_SECRET": secret,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.index:app", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert server.stderr is not None
        for line in server.stderr:
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError("uvicorn exited before serving")
        status, _ = get_json(f"{base}/health")
        me_status, me = get_json(f"{base}/api/v1/me", token)
        anonymous_status, _ = get_json(f"{base}/api/v1/me")
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert status == 200
    assert me_status == 200
    assert me["data"]["profile"]["display_name"] == "Curl User"
    assert anonymous_status == 401


# A test run SIGKILLed while its throwaway cluster runs: the cluster's server and directory stay.
KILLED_RUN = """
import os, signal
from scripts.pg_cluster import throwaway_cluster
with throwaway_cluster() as cluster:
    print(cluster.data.parent, cluster.port, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_cluster_left_by_a_killed_run_is_removed_by_the_next_cluster() -> None:
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    root, port = killed.stdout.split()
    left = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with psycopg.connect(left) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with throwaway_cluster() as cluster:
        assert not Path(root).exists()
        assert str(cluster.port) != port
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(left, connect_timeout=5)
        with psycopg.connect(cluster.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
