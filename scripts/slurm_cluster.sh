#!/usr/bin/env bash
# A throwaway single-node SLURM cluster for `make test-slurm` (tests/test_slurm.py).
#
#   scripts/slurm_cluster.sh start DIR   prints `export ...` lines to eval (nothing when an
#                                         existing controller answers `scontrol ping`)
#   scripts/slurm_cluster.sh stop DIR    cancels this cluster's jobs and stops only the daemons
#                                         `start DIR` started (their pids are in DIR/*.pid)
#   scripts/slurm_cluster.sh install     only makes sure SLURM can run here (.ci/run asks)
#
# When no controller answers, `start` installs slurm-wlm + munge with apt-get if they are
# missing, writes DIR/slurm.conf sized from `nproc` and /proc/meminfo (one node, partition
# `debug`, select/cons_tres with CPUs consumable, so several 1-CPU jobs run side by side),
# and starts munged, slurmctld and slurmd with their state, logs, sockets and pids in DIR.
# There is no slurmdbd: job completions go to DIR/jobcomp.log and DIR/bin/sacct runs
# `sacct --completion`, which is what submitit and the tests read. Exit 3: SLURM cannot be
# installed here (no apt-get, or it failed); the message says why.
set -euo pipefail

die() { echo "slurm_cluster: $1" >&2; exit "${2:-1}"; }
say() { echo "slurm_cluster: $*" >&2; }

free_port() {  # the first port from $1 on that nothing on 127.0.0.1 listens to
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}

install_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && return 0
  command -v apt-get >/dev/null || die "slurm-wlm is not installed and there is no apt-get" 3
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "slurm-wlm is not installed and we are not root" 3
    sudo=(sudo -n)
  fi
  say "installing slurm-wlm and munge with apt-get"
  { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      "${sudo[@]}" apt-get install -y -qq slurm-wlm munge; } >"$1/apt.log" 2>&1 \
    || die "apt-get install slurm-wlm munge failed (see $1/apt.log): $(tail -n 1 "$1/apt.log")" 3
}

write_conf() {  # $1 = DIR
  local dir=$1 host cpus mem_mb user ctld_port slurmd_port
  host=$(hostname -s)
  cpus=${MBT_SLURM_CPUS:-$(nproc)}
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  user=$(id -un)
  ctld_port=$(free_port 6817)
  slurmd_port=$(free_port $((ctld_port + 1)))
  mkdir -p "$dir/ctld" "$dir/spool"
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm_cluster.sh: one node, $cpus CPUs (nproc), ${mem_mb} MB.
ClusterName=mbt-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/ctld/slurmctld.pidfile
SlurmdPidFile=$dir/spool/slurmd.pidfile
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.log
ReturnToService=2
# Short waits suit a test cluster: a requeued or timed-out job is killed 2 s after SIGTERM.
KillWait=2
MinJobAge=3600
InactiveLimit=0
NodeName=mbt-node NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # No slurmdbd here, so the real sacct has no accounting to read (and `sacct --completion`
  # drops array task ids): DIR/bin/sacct answers from the controller's job records instead
  # (MinJobAge keeps finished jobs for an hour), in the columns submitit and the tests use.
  mkdir -p "$dir/bin"
  cat >"$dir/bin/sacct" <<'PYEOF'
#!/usr/bin/env python3
"""sacct for a test cluster without slurmdbd: `scontrol show job -o` in sacct's columns.
Knows -o/--format, -j/--jobs, --name, -n/--noheader; ignores other options (-P, -X, ...)."""
import re
import subprocess
import sys

COLUMNS = {"JobName": "JobName", "State": "JobState", "NodeList": "NodeList",
           "Start": "StartTime", "End": "EndTime", "Submit": "SubmitTime",
           "ExitCode": "ExitCode", "Restarts": "Restarts", "Partition": "Partition",
           "Timelimit": "TimeLimit", "Elapsed": "RunTime"}
fmt, jobs, names, header = "JobID,JobName,State", set(), set(), True
args = sys.argv[1:]
while args:
    key, eq, val = args.pop(0).partition("=")
    if key in ("-o", "--format", "-j", "--jobs", "--name") and not eq:
        val = args.pop(0)
    if key in ("-o", "--format"):
        fmt = val
    elif key in ("-j", "--jobs"):
        jobs.update(val.split(","))
    elif key == "--name":
        names.update(val.split(","))
    elif key in ("-n", "--noheader"):
        header = False
fields = [f.split("%")[0] for f in fmt.split(",")]
out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
rows = []
for line in out.splitlines():
    rec = dict(re.findall(r"(\w+)=(\S*)", line))
    if "JobId" not in rec:
        continue
    array, task = rec.get("ArrayJobId"), rec.get("ArrayTaskId", "").split("%")[0]
    if array and task:
        rec["JobID"] = f"{array}_{task}" if task.isdigit() else f"{array}_[{task}]"
    else:
        rec["JobID"] = rec["JobId"]
    if jobs and not jobs & {rec["JobId"], rec["JobID"], array}:
        continue
    if names and rec.get("JobName") not in names:
        continue
    rows.append((int(rec["JobId"]), [rec.get(COLUMNS.get(f, f), "") for f in fields]))
if header:
    print("|".join(fields))
for _, row in sorted(rows):
    print("|".join(row))
PYEOF
  chmod +x "$dir/bin/sacct"
}

start_daemon() {  # $1 = DIR, $2 = name, rest = command; records the pid in DIR/<name>.pid
  local dir=$1 name=$2
  shift 2
  setsid "$@" >"$dir/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

start() {
  local dir=$1
  if scontrol ping >/dev/null 2>&1; then
    say "reusing the running controller ($(scontrol ping | head -n 1 | xargs))"
    return 0
  fi
  mkdir -p "$dir"
  chmod 700 "$dir"
  install_slurm "$dir"
  write_conf "$dir"
  export SLURM_CONF=$dir/slurm.conf
  # munged insists on a private key owned by whoever runs it.
  head -c 1024 /dev/urandom >"$dir/munge.key"
  chmod 400 "$dir/munge.key"
  start_daemon "$dir" munged munged --foreground --force --socket="$dir/munge.socket" \
    --key-file="$dir/munge.key" --pid-file="$dir/munged.pidfile" \
    --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  for _ in $(seq 50); do [ -S "$dir/munge.socket" ] && break; sleep 0.1; done
  [ -S "$dir/munge.socket" ] || die "munged did not start: $(tail -n 3 "$dir/munged.out")"
  start_daemon "$dir" slurmctld slurmctld -D -i -f "$SLURM_CONF"
  start_daemon "$dir" slurmd slurmd -D -N mbt-node -f "$SLURM_CONF"
  local state=
  for _ in $(seq 150); do
    state=$(sinfo -h -n mbt-node -o %T 2>/dev/null || true)
    case $state in idle|mixed|allocated) break ;; esac
    sleep 0.2
  done
  case $state in
    idle|mixed|allocated) ;;
    *) stop "$dir"; die "the node did not come up (state '${state:-none}'); logs in $dir" ;;
  esac
  say "started munged, slurmctld, slurmd in $dir ($(sinfo -h -o '%P %c CPUs %m MB'))"
  echo "export SLURM_CONF=$SLURM_CONF"
  echo "export PATH=$dir/bin:\$PATH"
}

stop() {
  local dir=$1 pid
  ls "$dir"/*.pid >/dev/null 2>&1 || return 0  # we started nothing
  if [ -f "$dir/slurmctld.pid" ]; then
    export SLURM_CONF=$dir/slurm.conf
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do  # let slurmd kill the jobs' processes before it goes
      [ -z "$(squeue -h 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for name in slurmd slurmctld munged; do
    [ -f "$dir/$name.pid" ] || continue
    pid=$(cat "$dir/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$name.pid"
  done
  say "stopped the daemons started in $dir"
}

case ${1:-} in
  start) start "${2:?usage: $0 start DIR}" ;;
  stop) stop "${2:?usage: $0 stop DIR}" ;;
  install)
    scontrol ping >/dev/null 2>&1 && exit 0
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    install_slurm "$tmp" ;;
  *) die "usage: $0 start DIR | stop DIR | install" 2 ;;
esac
