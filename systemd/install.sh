#!/usr/bin/env bash
# Install (or upgrade) shelfgate on this machine from a checkout, as root:
#   sudo ./systemd/install.sh
# A thin wrapper over the package path (README "Installing on a gateway"): builds the .deb for
# this machine's CPU with scripts/build-deb (the wheels come from PyPI: needs the internet) and
# installs it with apt. A store without internet: build on another machine, copy the .deb or
# the offline bundle. Remove: sudo apt remove shelfgate; everything: sudo apt purge shelfgate.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo ./systemd/install.sh)" >&2; exit 1; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
chmod 0755 "$OUT"  # apt reads the .deb as its _apt user
"$SRC/scripts/build-deb" --no-bundle --out "$OUT" >/dev/null
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$OUT"/shelfgate_*.deb
