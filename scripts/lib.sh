# Shared by scripts/dev and scripts/test: a venv with the project installed, and a server URL.
# Sourced, not run.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"

ensure_venv() {
  local stamp="$VENV/.installed-from" want
  want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$PY" ]; then
    echo "creating .venv" >&2
    python3 -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing the project and its dev dependencies into .venv" >&2
    "$PY" -m pip install --quiet --upgrade pip >&2
    "$PY" -m pip install --quiet -e "$REPO[dev]" >&2
    echo "$want" > "$stamp"
  fi
}

# Prints a superuser URL: DATABASE_URL, else 127.0.0.1:5432, else the embedded server.
postgres_server_url() {
  (cd "$REPO" && "$PY" -m scripts.postgres url)
}
