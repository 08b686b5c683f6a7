#!/usr/bin/env bash
# The CUDA path on a real GPU, without Bazel there (docs/gpus.md, "On a real GPU").
#
#   tools/gpu_check.sh prepare   here, with Bazel: builds the targets below and copies their
#                                runfiles trees, with the bazel-runfiles wheel, into .gpu_check/
#   tools/gpu_check.sh           on the GPU machine, from the repository root, with .gpu_check/
#                                carried: python3 with a CUDA torch, psutil, numpy, scikit-learn
#
# The second prints `import torch` time and launch time, then runs //train:model with
# nproc_per_node=gpu on NCCL, the 1-GPU py_distributed_test //tests/e2e:gpu_nccl_test as
# `bazel test` would (its TEST_* variables), two 1-GPU claims at once (the second waits), a request
# for more GPUs than the machine has (one line, exit 2), and a launcher that initialised CUDA
# before starting workers with start_method=fork (the fallback to spawn). Each step is bounded;
# all together take well under 5 minutes on one GPU. A summary of PASS/FAIL lines ends the output,
# and the whole log goes to $OUT/gpu_check.log where $OUT is set. Without CUDA it runs what a CPU
# can of the same copied trees (gloo, a made-up pool), so that it can be checked where it is made.
set -u
cd "$(dirname "$0")/.."
CARRIED=.gpu_check
TARGETS=(//train:model //tests/e2e:gpu_nccl_test //tests/e2e:gpu_claim_test)

prepare() {
  set -e
  bazel build "${TARGETS[@]}"
  rm -rf "$CARRIED"
  mkdir -p "$CARRIED/whl"
  for target in "${TARGETS[@]}"; do
    path="${target#//}"
    path="${path/://}"
    mkdir -p "$CARRIED/$(dirname "$path")"
    cp -L "bazel-bin/$path" "$CARRIED/$path"
    # Dereferenced: the tree must not point into this machine's output base.
    cp -rL "bazel-bin/$path.runfiles" "$CARRIED/$path.runfiles"
  done
  version=$(sed -n 's/^bazel_runfiles==//p' requirements_lock.txt)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$CARRIED/whl" "bazel_runfiles==$version"
  du -sh "$CARRIED"
  echo "carry $CARRIED; on the GPU machine: bash tools/gpu_check.sh"
}

RESULTS=()
record() {  # NAME EXIT-STATUS-OF-ITS-CHECK [DETAIL]
  local verdict=PASS
  [ "$2" = 0 ] || verdict=FAIL
  RESULTS+=("$verdict $1${3:+: $3}")
}

seconds_since() {
  python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$1"
}

now() {
  python3 -c 'import time; print(time.time())'
}

# Runs a step with a bound; its output is shown as it comes, and kept in $STEP_LOG.
step() {  # NAME SECONDS COMMAND...
  local name=$1 bound=$2
  shift 2
  echo
  echo "=== $name"
  STEP_LOG="$WORK/$(echo "$name" | tr -c 'A-Za-z0-9\n' '_').log"
  local started
  started=$(now)
  timeout --kill-after=10 "$bound" "$@" >"$STEP_LOG" 2>&1
  STEP_STATUS=$?
  STEP_SECONDS=$(seconds_since "$started")
  cat "$STEP_LOG"
  echo "--- exit $STEP_STATUS after $STEP_SECONDS s"
}

check() {
  WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
  # Bazel 4's stub starts with `#!/usr/bin/env python`; it then runs `python3` from PATH. Both must
  # be the interpreter that holds torch: a wrapper, not a link, keeps its virtualenv.
  mkdir -p "$WORK/bin"
  printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" >"$WORK/bin/python"
  chmod +x "$WORK/bin/python"
  export PATH="$WORK/bin:$PATH"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$CARRIED"/whl/*.whl ||
    { echo "cannot install the bazel-runfiles wheel from $CARRIED/whl: run tools/gpu_check.sh prepare first"; exit 1; }
  export PYTHONPATH="$WORK/site"
  export PYTHONUNBUFFERED=1
  # Claims of this check only, whatever else the machine runs.
  export PY_DISTRIBUTED_GPU_LOCK_DIR="$WORK/locks"
  mkdir -p "$PY_DISTRIBUTED_GPU_LOCK_DIR" "$WORK/records"
  export GPU_CLAIM_RECORDS="$WORK/records"

  echo "=== machine"
  nvidia-smi -L 2>&1 || echo "no nvidia-smi"
  python3 - <<'EOF'
import sys, time
started = time.perf_counter()
import torch
took = time.perf_counter() - started
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda},"
      f" available {torch.cuda.is_available()}, devices {torch.cuda.device_count()}")
print(f"import torch (first): {took:.2f} s")
EOF
  for run in 1 2 3; do
    python3 -c 'import time; s = time.perf_counter(); import torch; print(f"import torch: {time.perf_counter() - s:.2f} s")'
  done
  if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    gpu_steps
  else
    echo "no CUDA here: the copied trees on CPU only (gloo, a made-up pool); the GPU steps are unchecked"
    cpu_steps
  fi

  echo
  echo "=== summary"
  printf '%s\n' "${RESULTS[@]}"
  rm -rf "$WORK"
  ! printf '%s\n' "${RESULTS[@]}" | grep -q '^FAIL'
}

gpu_steps() {
  local claim="$CARRIED/tests/e2e/gpu_claim_test"
  # Launch time: exec to exit of a job of one rank on one claimed GPU that does nothing.
  step "launch time, 1 rank on 1 GPU (spawn)" 120 env PY_DISTRIBUTED_GPUS=1 GPU_CLAIM_SLEEP=0 "$claim"
  [ "$STEP_STATUS" = 0 ] && grep -q '"visible": "0"' "$GPU_CLAIM_RECORDS"/*.json
  record "launch time (spawn)" $? "$STEP_SECONDS s"
  ls "$PY_DISTRIBUTED_GPU_LOCK_DIR"
  step "launch time, 1 rank on 1 GPU (fork)" 120 env PY_DISTRIBUTED_GPUS=1 GPU_CLAIM_SLEEP=0 PET_START_METHOD=fork "$claim"
  record "launch time (fork)" "$STEP_STATUS" "$STEP_SECONDS s"

  step "//train:model, nproc_per_node=gpu, NCCL" 150 env PET_NPROC_PER_NODE=gpu \
    "$CARRIED/train/model" --epochs=3 --checkpoint="$WORK/model.pt"
  grep -q "backend nccl" "$STEP_LOG" && [ "$STEP_STATUS" = 0 ]
  record "//train:model on NCCL" $? "$STEP_SECONDS s; $(grep -o 'held-out accuracy [0-9.]*%' "$STEP_LOG" | tail -1)"

  mkdir -p "$WORK/test/tmp" "$WORK/test/outputs"
  step "//tests/e2e:gpu_nccl_test as bazel test runs it" 150 env TEST_TMPDIR="$WORK/test/tmp" \
    TEST_UNDECLARED_OUTPUTS_DIR="$WORK/test/outputs" XML_OUTPUT_FILE="$WORK/test/test.xml" \
    TEST_TIMEOUT=60 "$CARRIED/tests/e2e/gpu_nccl_test"
  grep -q 'failures="0"' "$WORK/test/test.xml" 2>/dev/null && [ "$STEP_STATUS" = 0 ]
  record "1-GPU py_distributed_test" $? "$STEP_SECONDS s"

  echo
  echo "=== two 1-GPU jobs at once: the second waits for the first"
  env PY_DISTRIBUTED_GPUS=1 GPU_CLAIM_SLEEP=5 "$claim" >"$WORK/first.log" 2>&1 &
  local first=$!
  sleep 2  # the first claims before it imports torch, well within this, and holds on for longer
  timeout 120 env PY_DISTRIBUTED_GPUS=1 GPU_CLAIM_SLEEP=0 "$claim" >"$WORK/second.log" 2>&1
  local second=$?
  wait "$first"
  local first_status=$?
  cat "$WORK/first.log" "$WORK/second.log"
  grep -q "waiting for 1 free GPU of this machine (NVML)" "$WORK/second.log" && [ "$first_status$second" = 00 ]
  record "a second claim of the one GPU waits" $?

  step "more GPUs than the machine has" 60 "$claim"  # its BUILD asks for 2
  [ "$STEP_STATUS" = 2 ] && [ "$(wc -l <"$STEP_LOG")" = 1 ]
  record "gpus=2 on a 1-GPU machine fails at once, one line" $? "$STEP_SECONDS s"

  step "fork after the launcher initialised CUDA" 150 env PET_START_METHOD=fork \
    PYTHONPATH="runtime:$PYTHONPATH" python3 tools/gpu_check/cuda_fork.py
  grep -q "start_method=fork: CUDA is initialised" "$STEP_LOG" && grep -q "all_reduce ok in a spawned worker" "$STEP_LOG" && [ "$STEP_STATUS" = 0 ]
  record "fork after CUDA falls back to spawn" $? "$STEP_SECONDS s"
}

cpu_steps() {
  local claim="$CARRIED/tests/e2e/gpu_claim_test"
  step "launch time, 2 ranks on a made-up pool (spawn)" 120 env CUDA_VISIBLE_DEVICES=0,1 GPU_CLAIM_SLEEP=0 "$claim"
  grep -q '"visible": "0,1"' "$GPU_CLAIM_RECORDS"/*.json && [ "$STEP_STATUS" = 0 ]
  record "launch time (spawn, CPU)" $? "$STEP_SECONDS s"
  step "//train:model, 2 CPU ranks, gloo" 150 env PET_NPROC_PER_NODE=2 \
    "$CARRIED/train/model" --epochs=1 --checkpoint="$WORK/model.pt"
  grep -q "backend gloo" "$STEP_LOG" && [ "$STEP_STATUS" = 0 ]
  record "//train:model on gloo" $? "$STEP_SECONDS s"
  step "more GPUs than the pool has" 60 env CUDA_VISIBLE_DEVICES=0 "$claim"
  [ "$STEP_STATUS" = 2 ] && [ "$(wc -l <"$STEP_LOG")" = 1 ]
  record "gpus=2 of a pool of 1 fails at once, one line" $?
}

case "${1:-check}" in
  prepare) prepare ;;
  check)
    if [ -n "${OUT:-}" ]; then
      set -o pipefail
      check 2>&1 | tee "$OUT/gpu_check.log"
    else
      check
    fi
    ;;
  *) echo "usage: tools/gpu_check.sh [prepare|check]" >&2; exit 2 ;;
esac
