#!/usr/bin/env bash
# Prepare a fresh Debian 12 host (root, no systemd, no daemon running) for
# kernbuild's tests: Docker engine, mmdebstrap, apt-ftparchive, gpg.
# Idempotent: safe to run again on a host that is already set up.
# Python packages are installed elsewhere.
set -euo pipefail

NAME=setup-host
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  docker.io        # engine 20.10 (API 1.41); pulls containerd, runc, tini, iptables
  mmdebstrap       # base image tarballs; root mode needs no extras
  dpkg-dev         # dpkg-scanpackages, dpkg-architecture, ...
  apt-utils        # apt-ftparchive
  gpg gpg-agent    # repository signing
  gpgv debian-archive-keyring  # Debian's signed indexes vouch for debian: sources
  git xz-utils ca-certificates
  make             # the unit tests run rendered debian/rules through make
  gcc libc6-dev    # the GPU tests compile kern-gpu-check and stub NVIDIA driver libraries
  squashfs-tools siftool  # SIF images without apptainer: mksquashfs, siftool
  bubblewrap       # runs commands in unpacked SIF root filesystems, as apptainer would
  runc             # udocker runs images in mode R1 with it (docker.io brings it too)
)

install_missing "${PACKAGES[@]}"

# dockerd needs cgroups; the machine's init mounts them. (Debian's
# cgroupfs-mount is deliberately not used: removing it unmounts them.)
mountpoint -q /sys/fs/cgroup || die "no cgroup hierarchy mounted at /sys/fs/cgroup"

# Docker programs NAT for the bridge network through the `iptables` command.
# Debian's default is the nf_tables backend; fall back to legacy where the
# kernel lacks nf_tables (both work on the reference machines).
if ! iptables -t nat -S >/dev/null 2>&1; then
  if iptables-legacy -t nat -S >/dev/null 2>&1; then
    log "iptables (nft) unusable, switching to iptables-legacy"
    update-alternatives --set iptables /usr/sbin/iptables-legacy
    update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy
  else
    die "neither iptables-nft nor iptables-legacy works; bridge networking impossible"
  fi
fi


# Any `docker` on PATH will do: /usr/local/bin/docker (a newer client) may
# shadow Debian's /usr/bin/docker; clients negotiate down to the daemon's API.
if docker info >/dev/null 2>&1; then
  log "docker engine already running"
else
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid" && [ "$(cat "/proc/$pid/comm")" = dockerd ]; then
    log "dockerd $pid is starting; waiting for it"
  else
    log "starting dockerd (log: /var/log/dockerd.log)"
    # A pid file left by a killed dockerd (possibly still an unreaped zombie)
    # makes the new one refuse to start.
    rm -f /var/run/docker.pid
    # setsid + closed stdio: dockerd leaves the CI step's process group and
    # does not hold its output pipe open. (Without job control setsid execs
    # in place, so $! is dockerd.) Storage driver is auto-selected: overlay2
    # here; dockerd itself falls back as far as vfs where overlay2 can't work.
    setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    pid=$!
  fi
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    alive "$pid" || break   # dockerd died: fail now, not after 60 s
    sleep 1
  done
  docker info >/dev/null 2>&1 || {
    tail -n 30 /var/log/dockerd.log >&2 || true
    die "docker engine is not up (dockerd exited or 60 s passed; see /var/log/dockerd.log)"
  }
fi

driver=$(docker info --format '{{.Driver}}')
log "docker $(docker version --format '{{.Server.Version}}') ready, storage driver: $driver"
[ "$driver" = overlay2 ] || log "WARNING: storage driver is $driver, not overlay2: builds will be slow"
