#!/usr/bin/env bash
# The cpu-protocol sweeps (Tables 2-3, Figures 2(b) and 3, issue 25's three tasks) on the GPU
# machine the device tool lends, in the copy of this repository it sends. The cells are the
# ones `make reproduce-*` runs here, with the same run keys (PIPELINE=dataloader: CIFAR's
# DataLoader pipeline, as on a CPU), so a cell done on either machine is done; each record
# names the device it ran on. Many small cells share the GPU (MBT_JOBS_PER_GPU slots,
# LAUNCHER=local_gpus), the groups run side by side, and each stops at the deadline (a cell
# cut short is not recorded; the next call runs it again).
#
# The environment: scripts/device_env.sh. Here first: make device-prepare (wheels, data links,
# the commit; see that script), then
#   run(command="scripts/device_sweep.sh", timeout_s=600, carry=[".device"]), give_back,
# and back here: python -m mbt.ledger_merge <files_at>/ledger.jsonl results/ledger.jsonl
#
# Usage: scripts/device_sweep.sh [--minutes M] [--jobs-per-gpu N] [--plan] [GROUP...]
#   GROUP: table2 table3 fig2b fig3 ood (default: every group whose data came along)
#   --minutes: deadline for the sweeps, from the start (default 8.5). A job ignores SIGTERM
#     (submitit), so it ends at the SIGKILL 30 s later: the script ends about a minute
#     after the deadline, inside a 600 s command.
#   --plan: print each group's commands (make -n) and stop
#   --args "OVERRIDES": more Hydra overrides for every sweep (e.g. "trainer.epochs=2"; they
#     change the run keys unless they leave the config as it was)
#   --gpu-check: first `scripts/gpu_check.py --skip bench` (its training and search sections,
#     a few minutes) into $OUT as gpu_check.{md,json}, then the sweeps until the deadline:
#     both asks of a lent GPU in one command
#   --allow-dirty: train although the copy's code is not the commit device-prepare saw
#     (otherwise refused: its records would name a commit that is not the code they ran)
# Writes three files to $OUT (the device tool's; elsewhere results/device/), five with
# --gpu-check, of the 8 the tool brings back: ledger.jsonl (a copy of results/ledger.jsonl
# plus the new records; copied there every 30 s, so a killed command still brings back
# what finished), device_sweep.log, failures.log (job errors, each group's last lines).
# The ledger itself and its lock files stay in /tmp/mbt-device.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
minutes=8.5 per_gpu=12 plan=0 allow_dirty=0 check=0 extra="" groups=()
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --jobs-per-gpu) per_gpu=$2; shift 2 ;;
    --plan) plan=1; shift ;;
    --allow-dirty) allow_dirty=1; shift ;;
    --gpu-check) check=1; shift ;;
    --args) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    table2|table3|fig2b|fig3|ood) groups+=("$1"); shift ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
command -v make > /dev/null || PATH=$PATH:$ROOT/.device/bin  # device-prepare carries one
need() {
  for tool; do
    command -v "$tool" > /dev/null || { echo "error: $tool is not installed here (GNU make, util-linux, coreutils)" >&2; exit 2; }
  done
}
need make
D=$ROOT/.device/data
if [ ${#groups[@]} = 0 ]; then
  [ -d "$D/cifar-10-batches-py" ] && groups+=(table2 table3 fig2b fig3)
  [ -d "$D/fashion-mnist" ] && [ -d "$D/fortunes" ] && [ -d "$D/cifar-10-batches-py" ] && groups+=(ood)
  [ ${#groups[@]} -gt 0 ] || { echo "error: no data in .device/data (make device-prepare, and carry it)" >&2; exit 2; }
fi
OUT=${OUT:-$ROOT/results/device}
W=${MBT_DEVICE_WORK:-/tmp/mbt-device}  # the ledger, its locks, the sweep folders, make output
L=$W/ledger.jsonl
PY=${PY:-python3}
START=$(date +%s)
DEADLINE=$(awk -v s="$START" -v m="$minutes" 'BEGIN {printf "%d", s + m * 60}')

# -i: a failed cell (its sweep exits 1) must not stop the rest of its recipe.
common=(-i --no-print-directory -f "$ROOT/Makefile" NO_INSTALL=1 "PY=$PY" LAUNCHER=local_gpus
        PIPELINE=dataloader "LEDGER=$L" "DATA_ROOT=$D")
# No per-epoch checkpoints: a machine starts bare, so a cut-off cell never resumes there.
args="logger=none trainer.progress=line paths.runs=$W/runs trainer.checkpoint_every=1000000"
args+=" trainer.keep_checkpoint=false${extra:+ $extra}"
group_cmd() {  # cmd=(the make command line of group $1)
  case $1 in
    table2|table3|fig3) cmd=(make "${common[@]}" "reproduce-$1" PROTOCOL=cpu "ARGS=$args") ;;
    # Seeds 1-7: seed 0 of both inits is in the ledger (torch's under an older key, whose
    # data.num_workers=0 does not change its numbers: full batch, no augmentation).
    fig2b) cmd=(make "${common[@]}" reproduce-fig2b PROTOCOL=full
                "ARGS=$args data.allow_partial=true model.bn_init=legacy,torch seed=1,2,3,4,5,6,7") ;;
    ood) cmd=(make "${common[@]}" reproduce-ood PROTOCOL=cpu "ARGS=$args") ;;
  esac
}
if [ $plan = 1 ]; then
  for g in "${groups[@]}"; do
    group_cmd "$g"
    echo "# $g"; "${cmd[@]}" -n
  done
  exit 0
fi

need flock timeout
mkdir -p "$OUT" "$W"
exec > >(tee -a "$OUT/device_sweep.log") 2>&1
tee_pid=$!
echo "device-sweep: groups ${groups[*]}; deadline $minutes min; $per_gpu jobs per GPU; $(date -u +%FT%TZ)"
export PY
source scripts/device_env.sh || exit 3
if [ "${MBT_SOURCE_DIRTY:-0}" = 1 ] && [ $allow_dirty = 0 ]; then
  echo "error: not training: this copy's code is not commit ${MBT_SOURCE_COMMIT:-?} (make device-prepare" \
       "right before the call; --allow-dirty trains anyway, records marked dirty)"
  exit 2
fi
if [ $check = 1 ]; then
  left=$(( DEADLINE - $(date +%s) - 120 ))  # leave the sweeps two minutes at least
  if [ "$left" -gt 60 ]; then
    timeout -k 30 "$left" "$PY" scripts/gpu_check.py --skip bench --data-root "$D" --out "$OUT"
    echo "device-sweep: gpu-check exited $? after $(( $(date +%s) - START )) s"
  else
    echo "device-sweep: gpu-check not run: --minutes leaves too little time"
  fi
fi
[ -f "$L" ] || cp results/ledger.jsonl "$L"
before=$(wc -l < "$L")
save() { cp "$L" "$OUT/.ledger.jsonl.part" && mv -f "$OUT/.ledger.jsonl.part" "$OUT/ledger.jsonl"; }
save
(while sleep 30; do save; done) &
saver=$!
export MBT_JOBS_PER_GPU=$per_gpu OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: jobs run on CPU"

pids=()
for g in "${groups[@]}"; do
  group_cmd "$g"
  left=$(( DEADLINE - $(date +%s) ))
  [ "$left" -gt 30 ] || { echo "device-sweep: $g not started: the deadline is near"; continue; }
  # Each group in its own folder: its sweep folders and job logs apart from the others'.
  mkdir -p "$W/$g"
  (cd "$W/$g" && timeout -k 30 "$left" "${cmd[@]}" > "$W/$g.log" 2>&1;
   echo "device-sweep: $g exited $? after $(( $(date +%s) - START )) s") &
  pids+=($!)
done
[ ${#pids[@]} = 0 ] || wait "${pids[@]}"
kill "$saver" 2> /dev/null
save

after=$(wc -l < "$L")
echo "device-sweep: $((after - before)) new record(s) after $(( $(date +%s) - START )) s"
"$PY" - "$L" "$before" <<'EOF'
import collections, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):] if l.strip()]
for (exp, dev, st), n in sorted(collections.Counter(
        (r.get("experiment"), r.get("device_name"), r.get("status")) for r in rows).items()):
    print(f"  {exp}: {n} {st} on {dev}")
EOF
# What failed, for the next call: each job's errors (submitit logs) and each group's tail.
{ grep -rhE "^(error|Traceback)|Error:" "$W"/*/multirun 2>/dev/null | sort | uniq -c | sort -rn | head -40
  for g in "${groups[@]}"; do echo "== $g"; tail -n 15 "$W/$g.log" 2>/dev/null; done
} > "$OUT/failures.log"
echo "device-sweep: merge here with: python -m mbt.ledger_merge <files_at>/ledger.jsonl results/ledger.jsonl"
exec >&- 2>&-
wait "$tee_pid"
