# shelfgate's system setup, sourced by the .deb's maintainer scripts (as /opt/shelfgate/lib/setup.sh)
# and by the offline bundle's install.sh: one implementation of the user, groups, directories,
# generated secrets and the venv, so both install paths give the same gateway.
#
# Everything is relative to $SG_ROOT (dpkg's $DPKG_ROOT when dpkg runs with --root and
# --force-script-chrootless; empty on a real install): no chroot, users are added with
# --prefix, owners are looked up in $SG_ROOT/etc/{passwd,group}, systemd is only touched on the
# running system.
# shellcheck shell=sh
SG_ROOT="${SG_ROOT:-${DPKG_ROOT:-}}"
SG_PREFIX=/opt/shelfgate
SG_PYTHON="${SG_PYTHON:-/usr/bin/python3}"

sg_has() {  # sg_has passwd|group NAME
  if [ -z "$SG_ROOT" ]; then getent "$1" "$2" >/dev/null
  else grep -q "^$2:" "$SG_ROOT/etc/$1" 2>/dev/null; fi
}

sg_id() {  # sg_id passwd|group NAME: the numeric id (owners in a --root tree are its own)
  if [ -z "$SG_ROOT" ]; then getent "$1" "$2" | cut -d: -f3
  else awk -F: -v n="$2" '$1 == n { print $3 }' "$SG_ROOT/etc/$1"; fi
}

sg_run_prefixed() {  # useradd/groupadd/... with --prefix ROOT when installing into a root dir
  cmd="$1"; shift
  if [ -z "$SG_ROOT" ]; then "$cmd" "$@"; else "$cmd" --prefix "$SG_ROOT" "$@"; fi
}

sg_users() {
  # bluetooth: BlueZ's D-Bus policy lets this group scan; it exists only once bluez is installed
  # (Raspberry Pi OS has it, a minimal Bookworm may not). dialout: the serial receivers' ports.
  for g in bluetooth dialout; do
    sg_has group "$g" || sg_run_prefixed groupadd --system "$g"
  done
  sg_has group shelfgate || sg_run_prefixed groupadd --system shelfgate
  if ! sg_has passwd shelfgate; then
    sg_run_prefixed useradd --system --gid shelfgate --groups bluetooth,dialout \
      --home-dir /var/lib/shelfgate --no-create-home --shell /usr/sbin/nologin \
      --comment "shelfgate gateway daemon" shelfgate
  else
    sg_run_prefixed usermod --append --groups bluetooth,dialout shelfgate
  fi
}

sg_dirs() {
  uid="$(sg_id passwd shelfgate)"; gid="$(sg_id group shelfgate)"
  # the outbox and the gateway's own key: the daemon's alone
  install -d -m 0750 -o "$uid" -g "$gid" "$SG_ROOT/var/lib/shelfgate"
  install -d -m 0750 -o 0 -g "$gid" "$SG_ROOT/etc/shelfgate"
}

sg_secret() {  # sg_secret FILE BYTES: random, generated once, kept ever after (root:shelfgate 0640)
  f="$SG_ROOT/etc/shelfgate/$1"
  if [ ! -s "$f" ]; then
    (umask 077; head -c "$2" /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n' > "$f.tmp" && echo >> "$f.tmp" && mv "$f.tmp" "$f")
  fi
  chown "0:$(sg_id group shelfgate)" "$f" && chmod 0640 "$f"
}

sg_secrets() {
  sg_secret secret 32        # privacy.secret_file: the store's pseudonymisation key
  sg_secret web-password 15  # web.password_file: the technician web app (user technician)
  for f in gateway.toml layout.toml; do
    [ ! -f "$SG_ROOT/etc/shelfgate/$f" ] || chgrp "$(sg_id group shelfgate)" "$SG_ROOT/etc/shelfgate/$f"
  done
}

sg_venv() {  # the venv, built afresh from the shipped wheels: offline, nothing from an index
  v="$SG_ROOT$SG_PREFIX/venv"; w="$SG_ROOT$SG_PREFIX/wheels"
  pipwhl="$(ls "$w"/pip-*.whl | tail -1)"
  rm -rf "$v"
  "$SG_PYTHON" -m venv --without-pip "$v"
  # pip runs from its own wheel (no python3-venv/ensurepip needed); --isolated: no pip.conf or
  # PIP_* of this machine; --no-index: the wheels here or nothing (wrong CPU: says which wheel)
  "$v/bin/python" "$pipwhl/pip" install --isolated --no-index --find-links "$w" \
    --no-cache-dir --disable-pip-version-check --quiet shelfgate
}

sg_systemd_live() { [ -z "$SG_ROOT" ] && [ -d /run/systemd/system ]; }

sg_stop_for_upgrade() {  # stop a running daemon (it commits its outbox); remember to start it
  if sg_systemd_live && systemctl is-active --quiet shelfgate.service; then
    touch /run/shelfgate.restart-after-upgrade
    systemctl stop shelfgate.service
  fi
}

sg_start_after_upgrade() {
  if sg_systemd_live; then
    systemctl daemon-reload
    if [ -e /run/shelfgate.restart-after-upgrade ]; then
      rm -f /run/shelfgate.restart-after-upgrade
      systemctl start shelfgate.service
    fi
  fi
}

sg_remove() {  # what the package manager does not know about: the venv (built at configure)
  if sg_systemd_live; then systemctl stop shelfgate.service 2>/dev/null || true; fi
  rm -rf "$SG_ROOT$SG_PREFIX/venv"
}

sg_purge() {  # the outbox, config, secrets, the user: gone (bluetooth/dialout stay: shared)
  rm -rf "$SG_ROOT/var/lib/shelfgate" "$SG_ROOT/etc/shelfgate"
  rm -f "$SG_ROOT/etc/systemd/system/multi-user.target.wants/shelfgate.service"
  if sg_has passwd shelfgate; then sg_run_prefixed userdel shelfgate; fi
  if sg_has group shelfgate; then sg_run_prefixed groupdel shelfgate; fi
  if sg_systemd_live; then systemctl daemon-reload; fi
}
