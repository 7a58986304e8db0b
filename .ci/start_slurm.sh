#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on loopback (Debian 12, slurm-wlm 22.05).
#
# Idempotent: installs slurm-wlm + munge if missing, writes /etc/slurm/slurm.conf
# from hostname / nproc / memory, starts munged, slurmctld and slurmd if they are
# not running, waits until the node is idle and prints one status line.
# No systemd, no cgroups, no accounting (slurmdbd): status via squeue only.
#
# Needs root. Exit codes: 0 ready, non-zero with "start_slurm: ERROR: ..." as the
# last line of stderr (tests/test_slurm_smoke.py skips with that line).
#
# Env knobs: SLURM_WAIT_S (default 60) seconds to wait for the node to be idle.
set -uo pipefail

T0=$(date +%s.%N)
WAIT_S=${SLURM_WAIT_S:-60}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid

log() { echo "start_slurm: $*" >&2; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
die() {
    log "ERROR: $* (after $(elapsed)s)"
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    # non-root (e.g. pytest after a privileged CI step started the cluster): accept a
    # cluster that is already up, otherwise we cannot do anything
    st=$(sinfo -h -n "$(hostname -s)" -o '%T' 2>/dev/null | head -n1)
    case "$st" in
        idle|mixed|allocated|completing)
            echo "start_slurm: OK (already running, not root) node=$(hostname -s) state=$st in $(elapsed)s"
            exit 0 ;;
    esac
    die "must run as root (needs to install packages and start daemons); no running cluster found"
fi

# ---------------------------------------------------------------- install
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
        || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "slurmctld missing and no apt-get to install slurm-wlm"
    log "installing slurm-wlm and munge via apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying install anyway"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/tmp/start_slurm_apt.log 2>&1 \
        || { tail -n 5 /tmp/start_slurm_apt.log >&2; die "apt-get install slurm-wlm munge failed (see /tmp/start_slurm_apt.log)"; }
    command -v slurmctld >/dev/null 2>&1 || die "slurmctld still missing after apt-get install"
fi

HOST=$(hostname -s)
[ -n "$HOST" ] || die "empty hostname"
NCPU=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
# a bit under the real memory (slurmd drains the node if RealMemory > actual)
REAL_MB=$(( MEM_MB * 9 / 10 ))
[ "$REAL_MB" -gt 100 ] || die "could not determine memory (MemTotal=${MEM_MB} MB)"

# The node name must resolve, and to loopback: with NoCtldInAddrAny/NoInAddrAny the
# daemons bind to the address the hostname resolves to (not 0.0.0.0).
resolved=$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR==1{print $1}')
case "$resolved" in
    127.*) ;;
    *)
        log "hostname $HOST resolves to '${resolved:-nothing}'; adding '127.0.0.1 $HOST' to /etc/hosts"
        echo "127.0.0.1 $HOST" >>/etc/hosts
        resolved=$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR==1{print $1}')
        case "$resolved" in
            127.*) ;;
            *) log "WARNING: $HOST still resolves to '$resolved' (earlier /etc/hosts entry?); daemons will bind there, not to loopback" ;;
        esac ;;
esac

# ---------------------------------------------------------------- munge
MUNGE_USER=root
id munge >/dev/null 2>&1 && MUNGE_USER=munge
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "generating munge key"
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --force --keyfile=/etc/munge/munge.key >/dev/null 2>&1 \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown -R "$MUNGE_USER:$MUNGE_USER" /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key

pid_alive() { # pidfile -> 0 if the process in it is alive
    [ -s "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null
}

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    rm -f /run/munge/munge.socket.2.lock 2>/dev/null
    if [ "$MUNGE_USER" = munge ]; then
        runuser -u munge -- munged --force >/dev/null 2>&1 || munged --force >/dev/null 2>&1
    else
        munged --force >/dev/null 2>&1
    fi
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.25
    done
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 \
        || die "munged did not start (munge -n | unmunge fails; see /var/log/munge/munged.log)"
fi

# ---------------------------------------------------------------- slurm.conf
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<EOF
# generated by .ci/start_slurm.sh -- single node on loopback, no accounting
ClusterName=localci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SlurmctldPort=6817
SlurmdPort=6818
# bind to the resolved (loopback) address instead of INADDR_ANY
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
# containers: no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# keep finished jobs visible to squeue for 10 min: the snakemake slurm plugin
# polls with squeue (no sacct without accounting) and needs MinJobAge >= 120 s
MinJobAge=600
# fast turnaround for tiny CI jobs
SchedulerParameters=defer_batch=0
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=${HOST} NodeAddr=127.0.0.1 NodeHostname=${HOST} CPUs=${NCPU} RealMemory=${REAL_MB} State=UNKNOWN
PartitionName=cpu Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
CONF_CHANGED=0
if ! cmp -s "$NEW_CONF" "$CONF_DIR/slurm.conf"; then
    CONF_CHANGED=1
    [ -f "$CONF_DIR/slurm.conf" ] && cp "$CONF_DIR/slurm.conf" "$CONF_DIR/slurm.conf.bak"
    install -m 0644 "$NEW_CONF" "$CONF_DIR/slurm.conf"
    log "wrote $CONF_DIR/slurm.conf (${HOST}: CPUs=${NCPU} RealMemory=${REAL_MB})"
fi
rm -f "$NEW_CONF"
# cgroup.conf is only read by cgroup plugins (none configured); write a harmless
# one anyway so nothing tries to autodetect and complain
[ -f "$CONF_DIR/cgroup.conf" ] || printf 'CgroupAutomount=no\n' >"$CONF_DIR/cgroup.conf"

stop_daemon() { # pidfile name
    if pid_alive "$1"; then
        local pid; pid=$(cat "$1")
        log "stopping $2 (pid $pid) to apply the new config"
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
}
if [ "$CONF_CHANGED" = 1 ]; then
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
fi

# ---------------------------------------------------------------- daemons
if ! pid_alive "$CTLD_PID"; then
    log "starting slurmctld"
    slurmctld >>"$LOG_DIR/slurmctld.stdout" 2>&1 \
        || { tail -n 5 "$LOG_DIR/slurmctld.log" >&2 2>/dev/null; die "slurmctld failed to start (see $LOG_DIR/slurmctld.log)"; }
fi
for _ in $(seq 1 40); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.25; done
scontrol ping 2>/dev/null | grep -q UP \
    || { tail -n 5 "$LOG_DIR/slurmctld.log" >&2 2>/dev/null; die "slurmctld not answering 'scontrol ping' (see $LOG_DIR/slurmctld.log)"; }

if ! pid_alive "$SLURMD_PID"; then
    log "starting slurmd"
    slurmd -N "$HOST" >>"$LOG_DIR/slurmd.stdout" 2>&1 \
        || { tail -n 5 "$LOG_DIR/slurmd.log" >&2 2>/dev/null; die "slurmd failed to start (see $LOG_DIR/slurmd.log)"; }
fi

# ---------------------------------------------------------------- wait for idle
state=""
deadline=$(( $(date +%s) + WAIT_S ))
resumed=0
while :; do
    state=$(sinfo -h -n "$HOST" -o '%T' 2>/dev/null | head -n1)
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|drained*|fail*)
            if [ "$resumed" -lt 3 ]; then
                log "node state '$state' -> resume"
                scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 \
                    || scontrol update NodeName="$HOST" State=IDLE >/dev/null 2>&1
                resumed=$((resumed + 1))
            fi ;;
    esac
    pid_alive "$SLURMD_PID" || { tail -n 5 "$LOG_DIR/slurmd.log" >&2 2>/dev/null; die "slurmd died (see $LOG_DIR/slurmd.log)"; }
    if [ "$(date +%s)" -ge "$deadline" ]; then
        reason=$(sinfo -h -R -n "$HOST" -o '%E' 2>/dev/null | head -n1)
        die "node $HOST not idle after ${WAIT_S}s (state='${state}' reason='${reason}'; see $LOG_DIR/slurmd.log)"
    fi
    sleep 0.5
done

echo "start_slurm: OK node=${HOST} state=${state} cpus=${NCPU} mem=${REAL_MB}MB partition=cpu $(sinfo --version 2>/dev/null) in $(elapsed)s"
