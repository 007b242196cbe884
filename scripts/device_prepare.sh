#!/usr/bin/env bash
# make device-prepare: everything a GPU machine of the device tool needs for
# scripts/device_sweep.sh, in .device/ (git-ignored; the tool sends it when `carry` names it):
#   .device/whl/     wheels of the pure-Python packages the GPU image lacks (Hydra, OmegaConf,
#                    submitit and its Hydra launcher, the autolr optimizers), at the versions
#                    of this .venv; the image's own torch/torchvision/pandas/matplotlib are used
#   .device/data/    hard links to the data the sweeps read (nothing is copied into the
#                    repository): cifar-10-batches-py/ from the partial copy, fashion-mnist/,
#                    fortunes/ (the regular, non-.dat files the text loader reads)
#   .device/source.env, .device/source.sha256
#                    the commit this tree is at and the hashes of its tracked files: the copy
#                    the tool sends has no .git, so the records made there name this commit
#                    (mbt.runinfo.git_state), and "dirty" if the copy differs from it
# Usage: scripts/device_prepare.sh [cifar] [fmnist] [text]   (default: all three)
# The tool sends at most 64 MiB: the script prints what each carry list weighs.
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
mkdir -p .device/whl .device/data
rm -f .device/whl/*.whl
pkgs=()
for p in hydra-core omegaconf antlr4-python3-runtime submitit hydra-submitit-launcher \
         prodigyopt dadaptation schedulefree dog-optimizer; do
  v=$("$PY" -m pip show "$p" 2>/dev/null | sed -n 's/^Version: //p')
  [ -n "$v" ] || { echo "error: $p is not installed in $PY's environment (make install)" >&2; exit 2; }
  pkgs+=("$p==$v")
done
# pip wheel: the one sdist among them (antlr4 4.9.3) is built here into a pure-Python wheel.
"$PY" -m pip wheel --quiet --no-deps --wheel-dir .device/whl "${pkgs[@]}"

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
git ls-files -z -- src conf scripts Makefile pyproject.toml | xargs -0 sha256sum > .device/source.sha256

mib() { du -sbc "$@" 2>/dev/null | tail -1 | awk '{printf "%.1f", $1 / 1048576}'; }
tree=$(git ls-files -z | xargs -0 du -bc 2>/dev/null | awk 'END {printf "%.1f", $1 / 1048576}')
echo "device-prepare: commit $(git rev-parse --short HEAD); tree ${tree} MiB, wheels $(mib .device/whl) MiB"
for d in .device/data/*/; do echo "  carry ${d%/}: $(mib "$d") MiB"; done
echo "carry: .device/whl .device/source.env .device/source.sha256 + the data folders a sweep reads" \
     "(64 MiB in all, the tree included)"
