#!/usr/bin/env bash
# Set up a one-node Slurm cluster on this host (Debian 12, root, no systemd):
# munge + slurmctld + slurmd, all started in the background, one node named
# after `hostname -s` with this machine's CPUs and memory.
# Idempotent: safe to run again on a host that is already set up.
set -euo pipefail

NAME=setup-slurm
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "must run as root"
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(slurm-wlm munge)
install_missing "${PACKAGES[@]}"

pidof_() { cat "/run/slurm/$1.pid" 2>/dev/null || true; }
running() { local pid; pid=$(pidof_ "$1"); [ -n "$pid" ] && alive "$pid" \
  && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; }

# --- munge -----------------------------------------------------------------
id munge >/dev/null 2>&1 || die "the munge package did not create a munge user"
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running"
else
  log "starting munged"
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
  done
  munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- slurm.conf ------------------------------------------------------------
node=$(hostname -s)
cpus=$(nproc)
mem_total=$(free -m | awk '/^Mem:/ {print $2}')
# Leave room for the OS and the daemons: 5 % and at least 512 MiB.
margin=$(( mem_total / 20 > 512 ? mem_total / 20 : 512 ))
mem=$(( mem_total - margin ))
defmem=$(( mem / cpus < 2048 ? mem / cpus : 2048 ))

mkdir -p /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/slurm
conf=$(cat <<EOF
# Written by kernbuild ci/setup-slurm.sh: a one-node cluster on this host.
ClusterName=kernbuild
SlurmctldHost=${node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups needed: processes are tracked through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Cores and memory are consumable: --mem is allocated and accounted.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=${defmem}
# Accounting without slurmdbd: usage sampled from /proc every 5 s (a job over
# its --mem is killed; without cgroups it reads FAILED, its output says
# "Exceeded job memory limit"), finished jobs appended to a text file (sacct
# reports "accounting storage is disabled"), and kept in the controller
# (scontrol show job) for MinJobAge seconds.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MinJobAge=600
KillWait=10
SchedulerType=sched/backfill
NodeName=${node} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=main Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=false
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]; then
  log "writing /etc/slurm/slurm.conf (${node}: ${cpus} CPUs, ${mem} MiB)"
  printf '%s\n' "$conf" > /etc/slurm/slurm.conf
  changed=true
fi

# --- daemons ---------------------------------------------------------------
start() {  # name, then its command line; both daemonize themselves
  local name=$1; shift
  if running "$name"; then
    if "$changed"; then
      log "$name running; restarting it for the new slurm.conf"
      kill "$(pidof_ "$name")" || true
      for _ in $(seq 20); do running "$name" || break; sleep 0.5; done
    else
      log "$name already running"; return
    fi
  fi
  log "starting $name (log: /var/log/slurm/$name.log)"
  setsid "$@" </dev/null >>"/var/log/slurm/$name.out" 2>&1
}
start slurmctld /usr/sbin/slurmctld
start slurmd /usr/sbin/slurmd

log "waiting for node ${node} to be idle"
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$node" -o '%T' 2>/dev/null || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    down*|drain*)  # a restarted slurmd comes back: resume a node left down
      scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
case "$state" in
  idle|mixed|allocated) ;;
  *)
    tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    die "node ${node} is not idle after 60 s (state: '${state:-no answer from slurmctld}'); see /var/log/slurm/"
    ;;
esac
sinfo
log "slurm ready: node ${node} ${state}"
