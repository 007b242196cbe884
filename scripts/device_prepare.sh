#!/usr/bin/env bash
# make device-prepare: everything a GPU machine of the device tool needs for
# scripts/device_sweep.sh, in .device/ (git-ignored; the tool sends it when `carry` names it):
#   .device/whl/     wheels of the pure-Python packages the GPU image lacks (Hydra, OmegaConf,
#                    submitit and its Hydra launcher, the autolr optimizers), at the versions
#                    of this .venv; the image's own torch/torchvision/pandas/matplotlib are used
#   .device/data/    hard links to the data the sweeps read (nothing is copied into the
#                    repository): cifar-10-batches-py/ from the partial copy, fashion-mnist/,
#                    fortunes/ (the regular, non-.dat files the text loader reads)
#   .device/bin/make GNU make, should the image lack it
#   .device/source.{env,files,sha256}
#                    the commit this tree is at, its code files and their hashes: the copy
#                    the tool sends has no .git, so the records made there name this commit
#                    (mbt.runinfo.git_state), and scripts/device_sweep.sh refuses to train
#                    when the copy's code differs from it (scripts/device_env.sh checks)
# Usage: scripts/device_prepare.sh [cifar] [fmnist] [text]   (default: all three)
# Then carry=[".device"]. The tool sends at most 64 MiB: the script prints what each part
# weighs and stops above 63 (scripts/device_prepare.sh cifar: CIFAR's groups alone).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HEAD=${HEAD:-../shared/data/cifar-head}
FMNIST=${MBT_FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}
FORTUNES=${MBT_FORTUNES_ROOT:-/usr/share/games/fortunes}
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(cifar fmnist text)

if [ -n "$(git status --porcelain --untracked-files=no -- . ':(exclude)results')" ]; then
  echo "error: uncommitted changes outside results/: commit first, so the device's records" \
       "name a commit that holds the code they ran" >&2
  exit 2
fi
# The code a record depends on: these files (a file the copy has beyond them makes it differ
# too) and their hashes. Untracked files there would travel as well: refuse them.
code=(src conf scripts Makefile pyproject.toml)
if [ -n "$(git ls-files --others --exclude-standard -- "${code[@]}")" ]; then
  echo "error: untracked files in ${code[*]} would travel to the device: commit or remove them" >&2
  exit 2
fi
rm -rf .device/data
mkdir -p .device/data .device/bin
pkgs=()
for p in hydra-core omegaconf antlr4-python3-runtime submitit hydra-submitit-launcher \
         prodigyopt dadaptation schedulefree dog-optimizer; do
  v=$("$PY" -m pip show "$p" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$v" ] || { echo "error: $p is not installed in $PY's environment (make install)" >&2; exit 2; }
  pkgs+=("$p==$v")
done
# pip wheel: the one sdist among them (antlr4 4.9.3) is built here into a pure-Python wheel.
# Into a new folder first: a failed build keeps the wheels of the last one.
rm -rf .device/whl.new
"$PY" -m pip wheel --quiet --no-deps --wheel-dir .device/whl.new "${pkgs[@]}"
rm -rf .device/whl && mv .device/whl.new .device/whl
# GNU make, in case the image lacks it (x86-64, libc only): device_env.sh puts it on PATH then.
cp "$(command -v make)" .device/bin/make

link() {  # link SRC_DIR DEST_DIR [find tests...]: hard links where possible, else copies
  local src=$1 dest=$2; shift 2
  [ -d "$src" ] || { echo "error: $src is missing (see README: data)" >&2; exit 2; }
  rm -rf "$dest"; mkdir -p "$dest"
  find "$src" -maxdepth 1 -type f "$@" -exec sh -c \
    'for f; do ln "$f" "$0/" 2>/dev/null || cp "$f" "$0/"; done' "$dest" {} +
}
for part in "${parts[@]}"; do
  case $part in
    cifar) link "$HEAD/cifar-10-batches-py" .device/data/cifar-10-batches-py ;;
    fmnist) link "$FMNIST" .device/data/fashion-mnist -name '*-ubyte*' ;;
    text) link "$FORTUNES" .device/data/fortunes ! -name '*.dat' ;;
    *) echo "error: unknown part '$part' (cifar, fmnist, text)" >&2; exit 2 ;;
  esac
done

echo "MBT_SOURCE_COMMIT=$(git rev-parse HEAD)" > .device/source.env
git ls-files -- "${code[@]}" | LC_ALL=C sort > .device/source.files
tr '\n' '\0' < .device/source.files | xargs -0 sha256sum > .device/source.sha256

mib() { awk '{printf "%.1f", $1 / 1048576}'; }
bytes() { du -sbc "$@" 2>/dev/null | tail -1 | cut -f1; }
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -bc 2>/dev/null \
       | awk '$2 == "total" {n += $1} END {print n + 0}')
carry=$(bytes .device/whl .device/bin .device/source.env .device/source.files .device/source.sha256)
data=$(bytes .device/data)
total=$((tree + carry + data))
echo "device-prepare: commit $(git rev-parse --short HEAD); tree $(mib <<< "$tree") MiB, wheels" \
     "and make $(mib <<< "$carry") MiB"
for d in .device/data/*/; do echo "  ${d%/}: $(bytes "$d" | mib) MiB"; done
echo "  all: $(mib <<< "$total") MiB of the 64 the device tool sends (63 kept as the limit here)"
if [ "$total" -gt $((63 * 1048576)) ]; then
  echo "error: too much to send: prepare fewer data parts (e.g. scripts/device_prepare.sh cifar)" >&2
  exit 2
fi
echo "carry: .device (the device tool's carry=[\".device\"]). Prepare again right before each" \
     "call: the records made there name this commit"
