#!/usr/bin/env bash
# One prepared GPU run (issue 21): every check and benchmark zoo needs a GPU for, in at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh              on a GPU machine: report.md + results.json in $OUT
#                                             (else benchmarks/results/gpu-check-<date>-<gpu>)
#   bash benchmarks/gpu_check.sh --dry-run    the same sections on this CPU with tiny sizes (the test suite runs it)
#
# The GPU machine brings its own CUDA torch stack (torch, lightning, timm, ...) and has no network: the packages
# zoo's benchmark needs beyond it travel as wheels in .whl/ (`make gpu-wheels` here; the device tool's `carry`
# takes the ignored folder along) and are installed into a temporary folder, never over the machine's own.
# Other arguments go to `python -m benchmarks.gpu_check` (--sections, --total-budget, --out).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
dry=0
for arg in "$@"; do [ "$arg" = "--dry-run" ] && dry=1; done
# the sections' budgets sum to 430 s on a GPU; this outer limit catches a hang outside them
limit="${GPU_CHECK_LIMIT:-$([ $dry = 1 ] && echo 600 || echo 470)}"

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/zoo-gpu-check-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        || { echo "gpu_check.sh: installing the wheels in .whl/ failed" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:$site"
fi
export PYTHONUNBUFFERED=1

timeout --signal=TERM --kill-after=15 "$limit" "$PY" -m benchmarks.gpu_check "$@"
rc=$?
if [ $rc = 124 ] || [ $rc = 137 ]; then
    out="${OUT:-}"
    for ((i = 1; i <= $#; i++)); do [ "${!i}" = "--out" ] && { j=$((i + 1)); out="${!j}"; }; done
    [ -z "$out" ] && out="$(ls -dt benchmarks/results/gpu-check-* 2>/dev/null | head -1)"
    [ -n "$out" ] && [ -d "$out" ] && printf '\n**Stopped after %s s by gpu_check.sh**: the sections listed above finished, the others did not.\n' "$limit" >>"$out/report.md"
    echo "gpu_check.sh: stopped after $limit s" >&2
fi
exit $rc
