# Shared by scripts/run and scripts/test: the gateway's own virtual environment (PEP 668: never
# the system Python), and system packages installed through apt when they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHELFGATE_VENV:-$ROOT/.venv}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {  # apt_install CMD PACKAGE...: install PACKAGEs unless CMD is already there
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "installing $* (apt)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

make_venv() {  # make_venv EXTRAS: create the venv and install shelfgate into it (once per change)
  local stamp="$VENV/.installed${1//[^a-z]/-}"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT$1"
    touch "$stamp"
  fi
}
