# shellcheck shell=bash disable=SC2034  # the TL_* variables set here are read by the sourcing scripts
# Shared by launch/local.sh, launch/ray_job.sh and launch/slurm.sbatch (sourced, never run).
#
# The caller sets TL_PROG (its name, for messages) and TL_REPO (the checkout), and may define
# tl_script_option, called with the remaining arguments for every argument the shared parser does not
# know: it sets TL_SHIFT to how many arguments it consumed (0 = not its option, so the argument is a
# Hydra override). After tl_parse:
#   TL_DRY_RUN     1 with --dry-run
#   TL_CONFIG      (--config-name experiment/NAME) for --preset NAME, else empty
#   TL_OVERRIDES   everything else, in order (Hydra overrides and flags), verbatim
#   TL_PY          the Python that composes the config (and runs the job on this machine)
# and tl_print_config sets the environment in TL_CONFIG_ENV (KEY=VALUE ...) for the composing process.

tl_die() {
  printf '%s: error: %s\n' "$TL_PROG" "$*" >&2
  exit 2
}

# Names of the presets in config/experiment/, space-separated.
tl_presets() {
  local f names=()
  for f in "$TL_REPO"/config/experiment/*.yaml; do
    [ -e "$f" ] && names+=("$(basename "$f" .yaml)")
  done
  echo "${names[*]}"
}

# $PYTHON, else the checkout's .venv, else python3 on PATH.
tl_find_python() {
  if [ -n "${PYTHON:-}" ]; then
    TL_PY=$PYTHON
  elif [ -x "$TL_REPO/.venv/bin/python" ]; then
    TL_PY=$TL_REPO/.venv/bin/python
  else
    TL_PY=$(command -v python3) || tl_die "no python3 on PATH: set PYTHON=/path/to/python"
  fi
}

# One argument per call, shell-quoted only when it needs it (readable, and safe to paste).
tl_quote() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

tl_parse() {
  TL_DRY_RUN=0
  TL_CONFIG=()
  TL_OVERRIDES=()
  local preset="" a
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) TL_DRY_RUN=1; shift ;;
      --preset)
        [ $# -ge 2 ] && [ -n "$2" ] || tl_die "--preset needs a name, one of: $(tl_presets)"
        preset=$2; shift 2 ;;
      --preset=*) preset=${1#--preset=}; shift ;;
      -h|--help) tl_usage; exit 0 ;;
      --) shift; TL_OVERRIDES+=("$@"); break ;;
      *)
        TL_SHIFT=0
        if declare -F tl_script_option >/dev/null; then tl_script_option "$@"; fi
        if [ "$TL_SHIFT" -gt 0 ]; then shift "$TL_SHIFT"; else TL_OVERRIDES+=("$1"); shift; fi ;;
    esac
  done
  if [ -n "$preset" ]; then
    [ -f "$TL_REPO/config/experiment/$preset.yaml" ] ||
      tl_die "unknown preset '$preset': choose one of: $(tl_presets) (files in config/experiment/)"
    for a in ${TL_OVERRIDES[@]+"${TL_OVERRIDES[@]}"}; do
      case $a in
        --config-name|--config-name=*|-cn|-cn=*) tl_die "give --preset or --config-name, not both" ;;
      esac
    done
    TL_CONFIG=(--config-name "experiment/$preset")
  fi
  tl_find_python
}

# The training command as an array in TL_CMD: PYTHON -m tinylora_verl.main [config] [extra...] [overrides].
tl_train_cmd() {
  local python=$1; shift
  TL_CMD=("$python" -m tinylora_verl.main ${TL_CONFIG[@]+"${TL_CONFIG[@]}"} "$@"
          ${TL_OVERRIDES[@]+"${TL_OVERRIDES[@]}"})
}

# The composed config, resolved on this machine (Hydra's --cfg job --resolve); fails on a bad override.
TL_CONFIG_ENV=()
tl_print_config() {
  echo "# resolved config (composed here: $(tl_quote "$TL_PY" "${TL_CMD[@]:1}") --cfg job --resolve):"
  env PYTHONPATH="$TL_REPO${PYTHONPATH:+:$PYTHONPATH}" ${TL_CONFIG_ENV[@]+"${TL_CONFIG_ENV[@]}"} \
    "$TL_PY" "${TL_CMD[@]:1}" --cfg job --resolve ||
    tl_die "the config does not compose (see Hydra's message above)"
}
