#!/usr/bin/env bash
# Install shelfgate as a service on Raspberry Pi OS Bookworm (run as root from a checkout):
#   sudo ./systemd/install.sh
# - a dedicated venv in /opt/shelfgate/venv (Bookworm's pip refuses the system Python, and its
#   python3-paho-mqtt is 1.6: shelfgate needs 2.x)
# - the user shelfgate, /etc/shelfgate/{gateway.toml,layout.toml} (kept if already there),
#   /var/lib/shelfgate for the outbox, the unit enabled and started
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
apt-get install -y -qq python3-venv >/dev/null
id shelfgate >/dev/null 2>&1 || useradd --system --home /var/lib/shelfgate --shell /usr/sbin/nologin shelfgate
mkdir -p /opt/shelfgate /etc/shelfgate
rm -rf /opt/shelfgate/src && cp -r "$SRC" /opt/shelfgate/src && rm -rf /opt/shelfgate/src/.venv
[ -x /opt/shelfgate/venv/bin/python ] || python3 -m venv /opt/shelfgate/venv
/opt/shelfgate/venv/bin/pip install -q /opt/shelfgate/src
if [ ! -f /etc/shelfgate/gateway.toml ]; then
  # a fresh config: the technician web app on, behind the generated password
  sed -e 's#^data_dir = .*#data_dir = "/var/lib/shelfgate"#' \
      -e 's#^\# listen = "0.0.0.0:8080" .*#listen = "0.0.0.0:8080"#' \
      -e 's#^\# password_file = "/etc/shelfgate/web-password" .*#password_file = "/etc/shelfgate/web-password"#' \
      "$SRC/config/gateway.toml" > /etc/shelfgate/gateway.toml
fi
[ -f /etc/shelfgate/layout.toml ] || cp "$SRC/config/layout.toml" /etc/shelfgate/layout.toml
if [ ! -f /etc/shelfgate/secret ]; then
  (umask 077; head -c 32 /dev/urandom | base64 > /etc/shelfgate/secret)
fi
if [ ! -f /etc/shelfgate/web-password ]; then  # the technician web app's password (user technician)
  (umask 077; head -c 15 /dev/urandom | base64 | tr '+/' '-_' > /etc/shelfgate/web-password)
fi
chown -R root:shelfgate /etc/shelfgate && chmod 0640 /etc/shelfgate/*
install -m 0644 "$SRC/systemd/shelfgate.service" /etc/systemd/system/shelfgate.service
systemctl daemon-reload
systemctl enable --now shelfgate
echo "installed; edit /etc/shelfgate/gateway.toml, then: systemctl restart shelfgate; shelfgate status:"
echo "  sudo -u shelfgate /opt/shelfgate/venv/bin/shelfgate status --config /etc/shelfgate/gateway.toml"
echo "technician web app: http://$(hostname -I 2>/dev/null | cut -d' ' -f1):8080/ (user technician, password: sudo cat /etc/shelfgate/web-password)"
