# Sourced by bench/device_run.sh (and by tests/test_device_script.py): janus_rt importable from this checkout on a
# machine where it is not installed (the GPU machine: no pip, no network), and `janus-rt` as a shell function.
# In: the repo root as the current folder; JANUS_RT_PYTHON, the interpreter (default python3; the CI test passes
# "python -S" so that no installed janus_rt can fill a gap); JANUS_RT_PKG, where the link tree goes (default
# /tmp/janus-rt-pkg).
# Out: JANUS_RT_PKG/janus_rt, links that mirror setup.py's mapping (every entry of runtime/, the link
# runtime/kernels included, then export/ and bench/); PYTHONPATH starting there; PY, the interpreter as an array;
# janus-rt(). Returns non-zero with the failing modules named when any janus_rt module does not import from there.
read -ra PY <<< "${JANUS_RT_PYTHON:-python3}"
JANUS_RT_PKG=${JANUS_RT_PKG:-/tmp/janus-rt-pkg}
rm -rf "$JANUS_RT_PKG" && mkdir -p "$JANUS_RT_PKG/janus_rt" || return 2
for entry in "$PWD"/runtime/*; do
    [ "$(basename "$entry")" = __pycache__ ] || ln -s "$entry" "$JANUS_RT_PKG/janus_rt/" || return 2
done
ln -s "$PWD/export" "$JANUS_RT_PKG/janus_rt/export" && ln -s "$PWD/bench" "$JANUS_RT_PKG/janus_rt/bench" || return 2
export PYTHONPATH="$JANUS_RT_PKG${PYTHONPATH:+:$PYTHONPATH}"
janus-rt() { "${PY[@]}" -c 'import sys; from janus_rt.cli.main import main; sys.exit(main(sys.argv[1:]))' "$@"; }
"${PY[@]}" -m janus_rt.bench.import_check --under "$JANUS_RT_PKG" || {
    echo "device_env.sh: janus_rt does not import whole from $JANUS_RT_PKG (see above)" >&2
    return 1
}
