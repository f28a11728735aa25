#!/bin/sh
# shelfgate offline install, for a store gateway without internet and without apt: run as root
# from the unpacked bundle (shelfgate-VERSION-ARCH-offline.tar.gz, made by scripts/build-deb).
#   sudo ./install.sh             install, or upgrade (config, secrets and outbox are kept)
#   sudo ./install.sh --remove    remove the program (config, secrets and outbox are kept)
#   sudo ./install.sh --purge     remove everything: outbox, config, secrets, the user
#   ./install.sh --root DIR ...   into a directory tree instead of / (images, tests)
# Needs only python3 (3.11, as on Bookworm): the venv is built from the wheels in this bundle.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
action=install
SG_ROOT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) SG_ROOT="$(cd "$2" && pwd)"; shift 2 ;;
    --remove) action=remove; shift ;;
    --purge) action=purge; shift ;;
    *) echo "install.sh: unknown option $1 (expected --remove, --purge, --root DIR)" >&2; exit 2 ;;
  esac
done
export SG_ROOT
. "$HERE/setup.sh"
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (sudo ./install.sh)" >&2; exit 1; fi
if [ -z "$SG_ROOT" ] && dpkg-query -W -f '${Status}' shelfgate 2>/dev/null | grep -q installed; then
  echo "install.sh: shelfgate is installed here as a .deb: use apt install ./shelfgate_*.deb / apt purge shelfgate" >&2
  exit 1
fi
R="$SG_ROOT"
case "$action" in
  install)
    sg_stop_for_upgrade
    sg_users
    sg_dirs
    install -d "$R$SG_PREFIX/lib" "$R/etc/systemd/system" "$R/usr/local/bin"
    rm -rf "$R$SG_PREFIX/wheels" && cp -r "$HERE/wheels" "$R$SG_PREFIX/wheels"
    install -m 0644 "$HERE/setup.sh" "$R$SG_PREFIX/lib/setup.sh"
    for f in gateway.toml layout.toml; do  # an edited config is never overwritten
      if [ ! -f "$R/etc/shelfgate/$f" ]; then
        install -m 0640 "$HERE/$f" "$R/etc/shelfgate/$f"
      elif ! cmp -s "$HERE/$f" "$R/etc/shelfgate/$f"; then
        install -m 0640 "$HERE/$f" "$R/etc/shelfgate/$f.example"
        echo "kept /etc/shelfgate/$f; this version's example is /etc/shelfgate/$f.example" >&2
      fi
    done
    sg_secrets
    install -m 0644 "$HERE/shelfgate.service" "$R/etc/systemd/system/shelfgate.service"
    ln -sfn "$SG_PREFIX/venv/bin/shelfgate" "$R/usr/local/bin/shelfgate"
    sg_venv
    sg_start_after_upgrade
    echo "shelfgate installed. Next: edit /etc/shelfgate/gateway.toml, then" >&2
    echo "  sudo -u shelfgate shelfgate check --config /etc/shelfgate/gateway.toml" >&2
    echo "  sudo systemctl enable --now shelfgate" >&2
    ;;
  remove|purge)
    if sg_systemd_live; then systemctl disable shelfgate.service 2>/dev/null || true; fi
    sg_remove
    rm -rf "$R$SG_PREFIX"
    rm -f "$R/etc/systemd/system/shelfgate.service" "$R/usr/local/bin/shelfgate"
    if [ "$action" = purge ]; then sg_purge; elif sg_systemd_live; then systemctl daemon-reload; fi
    ;;
esac
