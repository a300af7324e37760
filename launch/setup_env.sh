# Sourced on every host before its ranks start; launch/pdsh.sh hands it to pdsh exactly as in
#
#   deepspeed --launcher_args "source ${PWD}/launch/setup_env.sh" --hostfile hostfile --module dsdet.train ...
#
# It activates the project's virtualenv (DSDET_VENV, default: .venv next to this folder) and sets the
# threads per rank. DeepSpeed puts the launcher args in front of its own "export NAME=value; ..." list, so
# the first of those exports arrives here as arguments: the last line runs it.
DSDET_VENV="${DSDET_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}"
source "${DSDET_VENV}/bin/activate"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$@"
