#!/usr/bin/env bash
# Train on this machine (one node): verl starts its own local Ray cluster.
#
#   launch/local.sh [--preset NAME] [--gpus N] [--dry-run] [HYDRA OVERRIDES...]
#
#   --preset NAME  a paper preset, config/experiment/NAME.yaml (gsm8k_paper, math_paper);
#                  default: the CPU demo config (config/cpu_demo.yaml)
#   --gpus N       GPUs on this machine (trainer.n_gpus_per_node=N; the presets assume 8)
#   --dry-run      print the command and the resolved config, start nothing
#   anything else  passed to Hydra unchanged (key=value overrides, --cfg job, ...)
#
# Python: $PYTHON, else <repo>/.venv/bin/python, else python3. The checkout is put first on PYTHONPATH.
# Examples:
#   launch/local.sh --preset gsm8k_paper --gpus 4 actor_rollout_ref.actor.optim.lr=1e-4
#   launch/local.sh --preset math_paper --dry-run
set -euo pipefail
TL_PROG=local.sh
TL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/_common.sh
source "$TL_REPO/launch/_common.sh"

tl_usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

GPUS=""
tl_script_option() {
  case "$1" in
    --gpus)
      [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || tl_die "--gpus needs a positive number of GPUs, got '${2:-}'"
      GPUS=$2; TL_SHIFT=2 ;;
  esac
}

tl_parse "$@"
extra=()
[ -n "$GPUS" ] && extra=("trainer.n_gpus_per_node=$GPUS")
tl_train_cmd "$TL_PY" ${extra[@]+"${extra[@]}"}

if [ "$TL_DRY_RUN" = 1 ]; then
  echo "# $TL_PROG --dry-run: nothing is started"
  echo "# command:"
  echo "PYTHONPATH=$(tl_quote "$TL_REPO") $(tl_quote "${TL_CMD[@]}")"
  tl_print_config
  exit 0
fi
echo "$TL_PROG: $(tl_quote "${TL_CMD[@]}")" >&2
export PYTHONPATH="$TL_REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "${TL_CMD[@]}"
