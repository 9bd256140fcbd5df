#!/usr/bin/env bash
# A real single-node SLURM cluster on loopback, for the integration test.
#
#   tests/slurm/cluster.sh up DIR     install slurm-wlm and munge if needed, start munged,
#                                     slurmctld and slurmd with config and state under DIR
#   tests/slurm/cluster.sh down DIR   stop the daemons started by `up DIR`
#   tests/slurm/cluster.sh install DIR  only install slurm-wlm and munge if needed
#
# Everything lives under DIR (config, munge key and socket, spool, logs, pid files). Point
# clients at it with `export SLURM_CONF=DIR/slurm.conf`. One link goes outside DIR: Snakemake's
# job-step executor strips SLURM_* variables, SLURM_CONF included, before its inner `srun`, which
# then reads the default /etc/slurm/slurm.conf; so when no such file exists, `up` links it to
# DIR/slurm.conf and `down` removes that link (an existing file is never touched). `up` is idempotent: daemons already running from DIR are
# kept. The node offers two fake GPUs (gres on /dev/null and /dev/zero) so two GPU jobs run at
# once, and SlurmdParameters=config_overrides lets it advertise more CPUs and memory than the
# machine has, so resource requests sized for a real cluster still schedule.
# Exit code 3 means "cannot run here" (not root, no apt-get): callers skip.
set -euo pipefail

action=${1:?usage: cluster.sh up|down DIR}
dir=$(realpath -m "${2:?usage: cluster.sh up|down DIR}")
mkdir -p "$dir"/{log,run,spool/ctld,spool/d,munge}

cannot_run() { echo "cannot run a SLURM cluster here: $*" >&2; exit 3; }

stop_pid() {  # stop_pid PIDFILE: TERM, then KILL after 10 s
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

system_conf=/etc/slurm/slurm.conf

if [[ $action == down ]]; then
    stop_pid "$dir/run/slurmd.pid"
    stop_pid "$dir/run/slurmctld.pid"
    stop_pid "$dir/run/munged.pid"
    if [[ -L $system_conf && $(readlink "$system_conf") == "$dir/slurm.conf" ]]; then
        rm -f "$system_conf"
    fi
    echo "SLURM cluster in $dir stopped"
    exit 0
fi
[[ $action == up || $action == install ]] || { echo "unknown action $action" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [[ $(id -u) == 0 ]] || cannot_run "slurm-wlm is not installed and this is not root"
    command -v apt-get >/dev/null || cannot_run "slurm-wlm is not installed and apt-get is absent"
    echo "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >"$dir/log/apt.log" 2>&1 \
        || cannot_run "apt-get install slurm-wlm munge failed (see $dir/log/apt.log)"
fi
[[ $(id -u) == 0 ]] || cannot_run "slurmd needs root to start jobs as other users"
[[ $action == install ]] && exit 0

# munge: a private key and socket.
if ! running "$dir/run/munged.pid"; then
    [[ -f $dir/munge/munge.key ]] || {
        dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
        chmod 600 "$dir/munge/munge.key"
    }
    chmod 700 "$dir/munge"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/munge.seed"
fi

cpus=32
cat >"$dir/slurm.conf" <<CONF
ClusterName=arenapref-test
SlurmctldHost=localhost
SlurmctldAddr=127.0.0.1
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=131072 Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF
cat >"$dir/gres.conf" <<CONF
NodeName=localhost Name=gpu File=/dev/null
NodeName=localhost Name=gpu File=/dev/zero
CONF
export SLURM_CONF=$dir/slurm.conf
if [[ -L $system_conf && ! -e $system_conf ]]; then
    rm -f "$system_conf"  # a dangling link left by a cluster that was not taken down
fi
if [[ ! -e $system_conf ]]; then
    mkdir -p "$(dirname "$system_conf")"
    ln -s "$dir/slurm.conf" "$system_conf"
elif [[ $(readlink "$system_conf") != "$dir/slurm.conf" ]]; then
    echo "note: $system_conf exists and is left alone; jobs' inner srun will read it" >&2
fi

daemon_alive() { pgrep -f -- "^$1 -f $SLURM_CONF\$" >/dev/null; }
daemon_alive slurmctld || slurmctld -f "$SLURM_CONF"
daemon_alive slurmd || slurmd -f "$SLURM_CONF"

# Wait for the node, at most 60 s. A daemon that exits (its port taken, a bad config) ends the wait
# at once; sinfo gets 5 s a call, as against a dead controller it would retry for long.
give_up() {
    echo "SLURM node did not come up ($*); logs in $dir/log" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
}
deadline=$((SECONDS + 60))
state=
until [[ $state == idle* || $state == mixed* || $state == allocated* ]]; do
    sleep 0.5
    for daemon in slurmctld slurmd; do
        daemon_alive "$daemon" || give_up "$daemon exited"
    done
    ((SECONDS < deadline)) || give_up "state: ${state:-none} after 60 s"
    state=$(timeout 5 sinfo -h -n localhost -o %T 2>/dev/null | head -1 || true)
done
echo "SLURM cluster up: SLURM_CONF=$SLURM_CONF (node localhost, $state)"
