#!/usr/bin/env bash
# N consecutive `kedro run --env ci --params="runtime.distributed.processes=2"`, each with its own
# time limit, so that a hang shows as a hang. Prints one line per run (PASS/FAIL, seconds) and
# a summary; logs under ${OUT:-/tmp/ddp_runs}. Run from the project root on a quiet machine:
#   bash benchmarks/ddp_runs.sh [runs=10] [limit_s=600]
set -u
runs=${1:-10}; limit=${2:-600}; out=${OUT:-/tmp/ddp_runs}; mkdir -p "$out"
passed=0; times=()
for i in $(seq "$runs"); do
  started=$(date +%s.%N)
  setsid kedro run --env ci --params="runtime.distributed.processes=2" >"$out/run-$i.log" 2>&1 &
  pid=$!
  for _ in $(seq "$limit"); do kill -0 $pid 2>/dev/null || break; sleep 1; done
  if kill -0 $pid 2>/dev/null; then
    kill -- -$pid; sleep 2; kill -9 -- -$pid 2>/dev/null
    echo "run $i: FAIL, no end in ${limit}s (hang?) - $out/run-$i.log"; continue
  fi
  wait $pid; status=$?
  seconds=$(echo "$(date +%s.%N) - $started" | bc)
  if [ $status -eq 0 ]; then
    passed=$((passed + 1)); times+=("$seconds"); printf 'run %d: PASS in %.1f s\n' "$i" "$seconds"
  else
    printf 'run %d: FAIL (exit %d) in %.1f s - %s\n' "$i" "$status" "$seconds" "$out/run-$i.log"
  fi
done
echo "$passed of $runs runs passed; times (s): ${times[*]:-none}"
[ "$passed" -eq "$runs" ]
