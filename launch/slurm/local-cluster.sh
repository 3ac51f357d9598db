#!/usr/bin/env bash
# A real Slurm on this one machine, with two compute "nodes", to try cascade.sbatch and for CI.
#
#   sudo launch/slurm/local-cluster.sh start [DIR]    # prints: export SLURM_CONF=DIR/slurm.conf
#   sudo launch/slurm/local-cluster.sh stop [DIR]
#
# Needs root (slurmd runs jobs as their users) and Debian's slurm-wlm and munge packages. The two nodes
# c1 and c2 are two slurmd daemons of this host, each started with its node name (slurmd -N) and
# listening on its own port (NodeHostname is this host for both, NodeAddr 127.0.0.1): a 2-node
# allocation is then two tasks on this host, so `srun --nodes 2` and the multi-node rendezvous of
# cascade.sbatch run for real. Debian's Slurm accepts this without the --enable-multiple-slurmd build
# (checked with 22.05). State, logs and spool live in DIR (default /tmp/cascade-slurm); nothing is
# written to /etc/slurm. munged is started only if none runs, and stopped only if this script started it.
set -euo pipefail

command=${1:-}
dir=${2:-/tmp/cascade-slurm}
conf=$dir/slurm.conf

die() { echo "local-cluster: $*" >&2; exit 1; }

start() {
  [ "$(id -u)" = 0 ] || die "needs root: slurmd runs every job as its user"
  for program in slurmctld slurmd munged; do
    command -v "$program" >/dev/null || die "$program is missing: apt-get install slurm-wlm munge"
  done
  mkdir -p "$dir"/{state,spool,log}
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  # cred_expire: a requeued job waits this long (+1 s) before it may start again (default 120 s);
  # sched_interval/bf_interval: look at pending jobs every second instead of every 30-60 s.
  cat >"$conf" <<EOF
ClusterName=cascade
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=30
NodeName=c1 NodeHostname=$host NodeAddr=127.0.0.1 Port=16818 CPUs=$cpus State=UNKNOWN
NodeName=c2 NodeHostname=$host NodeAddr=127.0.0.1 Port=16819 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=c1,c2 Default=YES MaxTime=INFINITE State=UP
EOF
  if ! munge -n >/dev/null 2>&1; then  # no munged answers
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    mkdir -p /run/munge && chown munge:munge /run/munge
    runuser -u munge -- munged
    touch "$dir/munged.ours"
  fi
  export SLURM_CONF=$conf
  slurmctld -c -f "$conf"  # -c: a fresh cluster, no jobs of an earlier start
  for node in c1 c2; do slurmd -f "$conf" -N "$node"; done
  for _ in $(seq 60); do
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = 2 ]; then
      echo "export SLURM_CONF=$conf"
      return 0
    fi
    sleep 1
  done
  sinfo -N >&2 || true
  tail -n 20 "$dir"/log/*.log >&2 || true
  die "the two nodes did not come up within 60 s (logs in $dir/log)"
}

stop() {
  local pids=() pidfile
  for pidfile in "$dir"/slurmd-c1.pid "$dir"/slurmd-c2.pid "$dir"/slurmctld.pid; do
    if [ -s "$pidfile" ]; then pids+=("$(cat "$pidfile")"); fi
    rm -f "$pidfile"
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 20); do  # up to 10 s to shut down cleanly, then no more
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.5
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  if [ -e "$dir/munged.ours" ]; then
    if [ -s /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
    rm -f "$dir/munged.ours"
  fi
}

case "$command" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop [DIR]" ;;
esac
