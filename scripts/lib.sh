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

# The Supabase CLI, pinned, from npm (the package carries the binary): installed under .local/ on
# first use. Newer releases may not install everywhere, so the version moves only on purpose.
SUPABASE_CLI_VERSION="2.117.0"
SUPABASE_CLI_DIR="$REPO/.local/supabase-cli"
SUPABASE_CLI="$SUPABASE_CLI_DIR/node_modules/.bin/supabase"

ensure_supabase_cli() {
  local stamp="$SUPABASE_CLI_DIR/.installed-version"
  if [ -x "$SUPABASE_CLI" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SUPABASE_CLI_VERSION" ]; then
    return
  fi
  if ! command -v npm >/dev/null; then
    echo "the Supabase CLI comes from npm: install Node.js 20 or later (with npm)" >&2
    return 1
  fi
  echo "installing the Supabase CLI $SUPABASE_CLI_VERSION into .local/supabase-cli" >&2
  mkdir -p "$SUPABASE_CLI_DIR"
  npm install --prefix "$SUPABASE_CLI_DIR" --save-exact --no-audit --no-fund --loglevel=error \
    "supabase@$SUPABASE_CLI_VERSION" >&2
  echo "$SUPABASE_CLI_VERSION" > "$stamp"
}

# `supabase db lint` checks PL/pgSQL with the plpgsql_check extension, which the server must
# offer. Debian packages it per major version; as root with apt it is installed when missing
# (a running server sees it at once). Otherwise this only warns: the lint test will fail.
ensure_plpgsql_check() {
  local server_url="$1" package
  if "$PY" -m scripts.postgres has-extension "$server_url" plpgsql_check; then
    return
  fi
  package="postgresql-$("$PY" -m scripts.postgres major-version "$server_url")-plpgsql-check"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $package (supabase db lint needs plpgsql_check)" >&2
    apt_install "$package" || true
    if "$PY" -m scripts.postgres has-extension "$server_url" plpgsql_check; then
      return
    fi
  fi
  echo "warning: the Postgres server does not offer plpgsql_check, so the lint test will fail;" \
    "install $package or its equivalent for this server" >&2
}

# A fresh machine may have no package lists yet: update them once if the first attempt fails.
# Only apt's errors are shown (on stderr); its progress lines are not.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}
