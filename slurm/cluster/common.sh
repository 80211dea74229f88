# Shared helpers for start.sh / stop.sh (sourced, not executed).
# shellcheck shell=bash disable=SC2034

GRIDLAB_SLURM_DIR=${GRIDLAB_SLURM_DIR:-/var/lib/gridlab-slurm}
GRIDLAB_SLURM_CONF_DIR=${GRIDLAB_SLURM_CONF_DIR:-/etc/slurm}
DIR=$GRIDLAB_SLURM_DIR
CONF_DIR=$GRIDLAB_SLURM_CONF_DIR
SLURM_CONF_FILE=$CONF_DIR/slurm.conf
DBD_CONF_FILE=$CONF_DIR/slurmdbd.conf
MARKER="# Managed by gridlab slurm/cluster/start.sh"
# Slurm tools (and the daemons) read this; /etc/slurm/slurm.conf is also the
# compiled-in default of Debian's packages, so users need no flag there.
export SLURM_CONF=$SLURM_CONF_FILE

say() { printf 'slurm-cluster: %s\n' "$*"; }
die() { printf 'slurm-cluster: ERROR: %s\n' "$*" >&2; exit 1; }

# Print the live pids whose command name (/proc/PID/stat field 2) is one of
# the arguments. Zombies (state Z/X) are not live: PID 1 here does not reap
# orphans, so a stopped daemon can linger as a zombie and kill -0 would
# still succeed on it.
live_pids() {
    local f line comm state pid want
    for f in /proc/[0-9]*/stat; do
        { read -r line < "$f"; } 2>/dev/null || continue
        comm=${line#*(}; comm=${comm%)*}
        state=${line##*) }; state=${state%% *}
        [[ $state == Z || $state == X ]] && continue
        for want in "$@"; do
            if [[ $comm == "$want" ]]; then
                pid=${f#/proc/}; echo "${pid%/stat}"
                break
            fi
        done
    done
}

pid_live() {
    local line state
    { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
    state=${line##*) }; state=${state%% *}
    [[ $state != Z && $state != X ]]
}

# Command names of each daemon (Debian installs slurmctld/slurmd as
# alternatives pointing at *-wlm binaries).
daemon_comms() {
    case $1 in
        slurmctld) echo "slurmctld slurmctld-wlm" ;;
        slurmd) echo "slurmd slurmd-wlm" ;;
        slurmdbd) echo "slurmdbd" ;;
        munged) echo "munged" ;;
    esac
}

daemon_pids() {
    # shellcheck disable=SC2046
    live_pids $(daemon_comms "$1")
}

is_running() { [[ -n $(daemon_pids "$1") ]]; }

# Print those of the given pids that are still live.
still_live() {
    local pid
    for pid in "$@"; do
        if pid_live "$pid"; then echo "$pid"; fi
    done
    return 0
}

# stop_daemon NAME: SIGTERM, wait up to 20 s, then SIGKILL.
stop_daemon() {
    local name=$1 pids pid i
    pids=$(daemon_pids "$name")
    if [[ -z $pids ]]; then
        say "$name: not running"
        return 0
    fi
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        # shellcheck disable=SC2086
        pids=$(still_live $pids)
        [[ -z $pids ]] && break
        sleep 0.1
    done
    if [[ -n $pids ]]; then
        say "$name: still alive after 20 s, sending SIGKILL to $pids"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            # shellcheck disable=SC2086
        pids=$(still_live $pids)
            [[ -z $pids ]] && break
            sleep 0.1
        done
        [[ -z $pids ]] || die "$name: could not stop pid(s) $pids"
    fi
    say "$name: stopped"
}
