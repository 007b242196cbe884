#!/usr/bin/env bash
# make demo, part 2: a short real training run (conf/experiment/demo.yaml) on CPU (636 s measured on 2 busy cores).
# Data: a full CIFAR-10 under $MBT_DATA_ROOT (default ./data), else the partial real copy
# ../shared/data/cifar-head, else a generated CIFAR-layout set (labelled synthetic).
set -euo pipefail
PY=${PY:-.venv/bin/python}
root=${MBT_DATA_ROOT:-data}
head=../shared/data/cifar-head
if [ -d "$root/cifar-10-batches-py" ]; then
  echo "demo: training on CIFAR-10 found in $root"
  data=("data.root=$root")
elif [ -d "$head/cifar-10-batches-py" ]; then
  echo "demo: no CIFAR-10 in $root; training on the real partial copy in $head"
  data=("data.root=$head" "data.allow_partial=true")
else
  echo "demo: no CIFAR-10 in $root or $head; training on a generated CIFAR-layout set (synthetic)"
  data=("data.root=$root")
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$PY" -m mbt.train --json experiment=demo "${data[@]}" "$@" | tee "$log" | grep --line-buffered -v '^{'
record=$(tail -n 1 "$log")
"$PY" - "$record" <<'PYEOF'
import json, sys
r = json.loads(sys.argv[1])
kind = "SYNTHETIC data" if r["synthetic"] else ("partial real CIFAR-10" if r["data"]["partial"] else "CIFAR-10")
print(f"\ndemo: {r['model']} + {r['optim']} on {kind} ({r['data']['num_train']} train / "
      f"{r['data']['num_test']} test images), {r['epochs_completed']} epochs: best test accuracy "
      f"{r['best_test_acc']:.2f}% (chance {100 / r['data']['num_classes']:.0f}%), "
      f"{r['wall_time']:.0f} s on {r['device_name']}")
print(f"demo: ledger record -> {r['config']['paths']['ledger']} (run_key {r['run_key']})")
w = r.get("wandb") or {}
if w.get("mode") == "offline":
    print(f"demo: W&B offline run -> {w['dir']} (upload: wandb sync {w['dir']})")
elif w.get("url"):
    print(f"demo: W&B run -> {w['url']}")
PYEOF
