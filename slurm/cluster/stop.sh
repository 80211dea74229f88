#!/usr/bin/env bash
# Stop the one-node Slurm cluster started by start.sh: slurmd, slurmctld,
# slurmdbd, and munged only if start.sh started it. Idempotent.
#
#   stop.sh                keep queued/running jobs (Slurm saves its state;
#                          job steps already running keep running and are
#                          picked up again by the next start.sh)
#   stop.sh --cancel-jobs  scancel every job first
#
# A daemon counts as stopped once its process is gone or a zombie: PID 1 on
# some machines does not reap orphans, so kill -0 alone would lie.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$HERE/common.sh"

CANCEL=0
for arg in "$@"; do
    case $arg in
        --cancel-jobs) CANCEL=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument '$arg' (use --cancel-jobs or --help)" ;;
    esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root"

if ((CANCEL)) && is_running slurmctld; then
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086
        scancel $jobs && say "cancelled jobs: ${jobs//$'\n'/ }"
        for _ in $(seq 1 100); do
            [[ -z $(squeue -h -t R,CG -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

stop_daemon slurmd
stop_daemon slurmctld
stop_daemon slurmdbd

marker=$DIR/run/munged.started-by-gridlab
if [[ -f $marker ]]; then
    pid=$(<"$marker")
    if [[ -n $pid ]] && pid_live "$pid" && [[ " $(daemon_pids munged | tr '\n' ' ') " == *" $pid "* ]]; then
        stop_daemon munged
    else
        say "munged: not running"
    fi
    rm -f "$marker"
elif is_running munged; then
    say "munged: left running (not started by start.sh)"
fi

left=$(live_pids slurmstepd | wc -l)
if ((left > 0)); then
    say "note: $left slurmstepd process(es) (running job steps) are still alive; start.sh reattaches them, stop.sh --cancel-jobs ends them"
fi
say "stopped"
