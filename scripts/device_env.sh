# Source this on the GPU machine of the device tool, in the copy of this repository it sent
# (after `make device-prepare` here, with .device/ carried): it makes the image's python3 run
# mbt without building .venv, then `make <target> NO_INSTALL=1 PY=python3` works there, e.g.
#   source scripts/device_env.sh && make gpu-check NO_INSTALL=1 PY=python3 \
#     ARGS="--data-root .device/data --out $OUT"
# - installs .device/whl (Hydra, OmegaConf, submitit, the autolr optimizers) into /tmp/mbt-site
#   and puts it and src/ on PYTHONPATH;
# - the copy has no .git: exports the commit device-prepare wrote (MBT_SOURCE_COMMIT), and
#   MBT_SOURCE_DIRTY=1 when the copy's code files are not that commit's (other files, or
#   other contents); scripts/device_sweep.sh then refuses to train;
# - puts the GNU make device-prepare carried on PATH if the image has none;
# - points the Fashion-MNIST and text readers at .device/data (CIFAR: data.root=.device/data).
# Returns (or exits, when run) 3 when mbt's training stack does not import.
_mbt_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${PY:=python3}"
if compgen -G "$_mbt_root/.device/whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/mbt-site "$_mbt_root"/.device/whl/*.whl || { echo "error: installing .device/whl failed" >&2; return 3 2>/dev/null || exit 3; }
  export PYTHONPATH=$_mbt_root/src:/tmp/mbt-site
else
  export PYTHONPATH=$_mbt_root/src
fi
if ! git -C "$_mbt_root" rev-parse HEAD > /dev/null 2>&1; then
  [ -f "$_mbt_root/.device/source.env" ] && export "$(cat "$_mbt_root/.device/source.env")"
  # The same code files, with the same contents, as the commit device-prepare saw.
  # The roots to list are those of device-prepare's list (src, conf, ...).
  if ! (cd "$_mbt_root" && sha256sum --quiet -c .device/source.sha256 &&
        find $(cut -d/ -f1 .device/source.files | sort -u) -type f ! -path '*/__pycache__/*' \
          ! -path '*.egg-info/*' | LC_ALL=C sort | cmp -s - .device/source.files) > /dev/null 2>&1
  then
    export MBT_SOURCE_DIRTY=1
    echo "warning: this copy's code differs from ${MBT_SOURCE_COMMIT:-its commit} (make" \
         "device-prepare again right before the call): its records would say dirty" >&2
  fi
fi
command -v make > /dev/null || export PATH=$PATH:$_mbt_root/.device/bin
[ -d "$_mbt_root/.device/data/fashion-mnist" ] && export MBT_FASHION_MNIST_ROOT=$_mbt_root/.device/data/fashion-mnist
[ -d "$_mbt_root/.device/data/fortunes" ] && export MBT_FORTUNES_ROOT=$_mbt_root/.device/data/fortunes
"$PY" -c "import mbt.train, hydra_plugins.hydra_submitit_launcher" || {
  echo "error: mbt's training stack does not import (make device-prepare here, carry .device/whl)" >&2
  return 3 2>/dev/null || exit 3; }
true
