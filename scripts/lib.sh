# Shared helpers for the project scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"
export CROWDWATCH_MODELS_DIR="${CROWDWATCH_MODELS_DIR:-$HOME/.cache/crowdwatch/models}"
export CROWDWATCH_DATA_DIR="${CROWDWATCH_DATA_DIR:-$ROOT/../shared/data}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# uv from PyPI into a private folder, so nothing is installed by hand on the machine.
ensure_uv() {
  if command -v uv >/dev/null 2>&1; then UV="$(command -v uv)"; return; fi
  local dir="$ROOT/.cache/uv-$UV_VERSION"
  if [ ! -x "$dir/bin/uv" ]; then
    say "installing uv $UV_VERSION from PyPI into $dir"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$dir" "uv==$UV_VERSION"
  fi
  UV="$dir/bin/uv"
}

# .venv from the committed lock file; all extras, so both detector backends are there.
ensure_venv() {
  ensure_uv
  say "syncing .venv from uv.lock"
  (cd "$ROOT" && "$UV" sync --frozen --all-extras --python python3 --quiet)
}

ensure_models() {
  local m
  for m in "$@"; do
    "$ROOT/.venv/bin/crowdwatch" models fetch "$m" >/dev/null
  done
}
