# Shared by scripts/run and scripts/test: the gateway's own virtual environment (PEP 668: never
# the system Python), and system packages installed through apt when they are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHELFGATE_VENV:-$ROOT/.venv}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# mosquitto and other daemons live in /usr/sbin, which is not on a normal user's PATH
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin:/sbin" ;; esac

apt_install() {  # apt_install CMD PACKAGE...: install PACKAGEs unless CMD is already there
  local cmd="$1"; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "installing $* (apt)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

apt_packages() {  # apt_packages PACKAGE...: install those of the packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt)" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

make_venv() {  # make_venv EXTRAS: create the venv and install shelfgate into it (once per change)
  local stamp="$VENV/.installed${1//[^a-z]/-}"
  # Debian splits venv (and ensurepip) out of python3; a bare machine may lack it
  python3 -c "import venv, ensurepip" 2>/dev/null || apt_packages python3-venv
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT$1"
    touch "$stamp"
  fi
}
