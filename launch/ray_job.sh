#!/usr/bin/env bash
# Submit training to a running Ray cluster with `ray job submit` (the job's driver runs on the cluster).
#
#   launch/ray_job.sh --address URL [--preset NAME] [--image URI | --pip SPEC ...] [--env KEY=VALUE ...]
#                     [--working-dir DIR | --no-working-dir] [--no-wait] [--dry-run] [HYDRA OVERRIDES...]
#
#   --address URL      the cluster's dashboard, e.g. http://head:8265 (default: $RAY_ADDRESS)
#   --preset NAME      a paper preset, config/experiment/NAME.yaml; default: the CPU demo config
#   --working-dir DIR  code shipped with the job (default: this checkout; .git, .venv and caches left out)
#   --no-working-dir   ship no code: the cluster's Python already has tinylora-verl installed
#   --pip SPEC         extra pip package for the job's runtime env (repeatable)
#   --image URI        run the job in this container image (Ray's image_uri: the image must hold
#                      tinylora-verl, e.g. docker/Dockerfile.gpu; no working dir and no --pip with it)
#   --env KEY=VALUE    environment variable of the job (repeatable), e.g. TINYLORA_DATA=/nfs/data
#   --no-wait          return after submitting instead of following the job's logs
#   --dry-run          print the command and the resolved config, submit nothing
#   anything else      passed to Hydra unchanged
#
# The config is composed on the cluster; --dry-run composes it here, with the --env values set.
# Ray CLI: $RAY, else the `ray` beside the Python (see local.sh), else `ray` on PATH.
set -euo pipefail
TL_PROG=ray_job.sh
TL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/_common.sh
source "$TL_REPO/launch/_common.sh"

tl_usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

ADDRESS=${RAY_ADDRESS:-}
IMAGE=""
WORKDIR=$TL_REPO
WORKDIR_SET=0
NO_WAIT=0
PIPS=()
ENVS=()
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || tl_die "$1 needs a value"; }
tl_script_option() {
  case "$1" in
    --address) need_value "$@"; ADDRESS=$2; TL_SHIFT=2 ;;
    --image) need_value "$@"; IMAGE=$2; TL_SHIFT=2 ;;
    --pip) need_value "$@"; PIPS+=("$2"); TL_SHIFT=2 ;;
    --working-dir)
      need_value "$@"; [ -d "$2" ] || tl_die "--working-dir $2: no such directory"
      WORKDIR=$(cd "$2" && pwd); WORKDIR_SET=1; TL_SHIFT=2 ;;
    --no-working-dir) WORKDIR=""; TL_SHIFT=1 ;;
    --env)
      need_value "$@"
      [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || tl_die "--env needs KEY=VALUE, got '$2'"
      ENVS+=("$2"); TL_SHIFT=2 ;;
    --no-wait) NO_WAIT=1; TL_SHIFT=1 ;;
  esac
}

tl_parse "$@"
[ -n "$ADDRESS" ] || tl_die "no Ray cluster given: pass --address http://HEAD:8265 or set RAY_ADDRESS"
if [ -n "$IMAGE" ]; then
  [ ${#PIPS[@]} -eq 0 ] || tl_die "--image and --pip cannot be combined (Ray's image_uri takes no pip list): put the packages in the image"
  [ "$WORKDIR_SET" = 0 ] || tl_die "--image and --working-dir cannot be combined (Ray's image_uri takes no working_dir): the image holds the code"
  WORKDIR=""
fi

# The runtime env as JSON (built by Python: no hand-made quoting).
RUNTIME_ENV=$(TL_WORKDIR=$WORKDIR TL_IMAGE=$IMAGE \
  TL_PIPS=$(printf '%s\n' ${PIPS[@]+"${PIPS[@]}"}) TL_ENVS=$(printf '%s\n' ${ENVS[@]+"${ENVS[@]}"}) \
  "$TL_PY" -c '
import json, os
env = {}
if os.environ["TL_WORKDIR"]:
    env["working_dir"] = os.environ["TL_WORKDIR"]
    env["excludes"] = [".git", ".venv", "**/__pycache__", ".pytest_cache", "outputs", "runs", ".cache"]
if os.environ["TL_IMAGE"]:
    env["image_uri"] = os.environ["TL_IMAGE"]
pips = [p for p in os.environ["TL_PIPS"].splitlines() if p]
if pips:
    env["pip"] = pips
env_vars = dict(kv.split("=", 1) for kv in os.environ["TL_ENVS"].splitlines() if kv)
if env_vars:
    env["env_vars"] = env_vars
print(json.dumps(env, sort_keys=True))
')

if [ -z "${RAY:-}" ]; then
  RAY=$(dirname "$TL_PY")/ray
  [ -x "$RAY" ] || RAY=ray
fi
submit=("$RAY" job submit --address "$ADDRESS" --runtime-env-json "$RUNTIME_ENV")
[ "$NO_WAIT" = 1 ] && submit+=(--no-wait)
tl_train_cmd python
submit+=(-- "${TL_CMD[@]}")

if [ "$TL_DRY_RUN" = 1 ]; then
  echo "# $TL_PROG --dry-run: nothing is submitted"
  echo "# command:"
  tl_quote "${submit[@]}"
  TL_CONFIG_ENV=(${ENVS[@]+"${ENVS[@]}"})
  tl_print_config
  exit 0
fi
echo "$TL_PROG: $(tl_quote "${submit[@]}")" >&2
exec "${submit[@]}"
