# Shared by the ci/setup-*.sh scripts: source it after setting NAME.
log() { printf '[%s] %s\n' "$NAME" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$NAME" "$*" >&2; exit 1; }

# Alive = exists and is not a zombie (a dead daemon can linger as one).
alive() { [ -e "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

# install_missing PACKAGE...: apt-get install what is not installed yet, without
# starting services: with no systemd, postinst scripts would try /etc/init.d starts
# that fail (or start daemons before their configuration exists). Daemons are
# started by the setup scripts themselves.
install_missing() {
  local missing=() p own_policy=false
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' \
      || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "packages already installed"
    return
  fi
  log "installing: ${missing[*]}"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=true
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  if "$own_policy"; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
}
