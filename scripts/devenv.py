"""The local stack's environment: one file, .local/dev.env, written by scripts/dev.

It holds the dev database URL and a JWT secret generated for this checkout, so scripts/dev,
scripts/token and a newcomer's shell agree without anyone copying secrets around.
"""

import argparse
import secrets
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV_ENV = REPO / ".local" / "dev.env"
LOCAL_SUPABASE_URL = "http://127.0.0.1:54321"


def load_dev_env(path: Path = DEV_ENV) -> dict[str, str]:
    if not path.exists():
        raise SystemExit(f"{path} is missing; run scripts/dev first")
    pairs = (word.split("=", 1) for word in shlex.split(path.read_text()) if "=" in word)
    return dict(pairs)


def write_dev_env(database_url: str, path: Path = DEV_ENV) -> dict[str, str]:
    """Keep the existing secret (tokens stay valid across restarts); refresh the rest."""
    previous = load_dev_env(path) if path.exists() else {}
    env = {
        "DATABASE_URL": database_url,
        "SUPABASE_URL": previous.get("SUPABASE_URL", LOCAL_SUPABASE_URL),
        "SUPABASE_JWT_SECRET": previous.get("SUPABASE_JWT_SECRET") or secrets.token_urlsafe(48),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()))
    path.chmod(0o600)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    args = parser.parse_args(argv)
    write_dev_env(args.database_url)
    print(DEV_ENV)
    return 0


if __name__ == "__main__":
    sys.exit(main())
