# Sourced by the scripts/*.sh entry points: `. exec-python.sh PROGRAM.py ARGS...` replaces
# the shell with Python running scripts/lib/PROGRAM.py. The interpreter is resolved to its
# real path first, because launchers such as pyenv's shims fork instead of exec'ing: the
# entry point's PID must be the Python process that owns the cleanup, so that a signal
# sent to that PID (CI, `timeout`, kill) reaches it. -B: no __pycache__ in the tree.
py=$(python3 -c 'import sys; print(sys.executable)') && [ -n "$py" ] || py=python3
exec "$py" -B "$(dirname "${BASH_SOURCE[0]}")/$1" "${@:2}"
