#!/usr/bin/env bash
# Paired, interleaved before/after benchmark of rpbench (ours) plus C rpmalloc.
# Build the two binaries in worktrees first, e.g. `git worktree add /tmp/rp-before <old>`
# then `cargo build --release -p rpmalloc-bench --bin rpbench` in each; override the
# paths with BEFORE=... AFTER=... (analysis: analyze.py OUT, pool.py OUT...).
# usage: /tmp/rp-pair.sh [REPS] [OUT]      (defaults: 8, /tmp/rp-pair-raw.txt)
# optional env: CONFIGS="set:threads ..." runs only those configs (default: all);
#               VARIANTS="before after before2" changes the variants rotated (default: all four)
# main session:   /tmp/rp-pair.sh 8 /tmp/rp-pair-raw.txt
# follow-up:      CONFIGS="larson:2 larson:8 handoff-medium:4 handoff-large:1 handoff-large:4 handoff-mixed:1 handoff-mixed:4" \
#                 VARIANTS="before after before2" /tmp/rp-pair.sh 10 /tmp/rp-pair-raw-followup.txt
# Variants per (rep, set, threads):
#   before  = /tmp/rp-before/target/release/rpbench run --alloc ours   (commit 3864835)
#   after   = /tmp/rp-after/target/release/rpbench  run --alloc ours   (commit 8266fa9)
#   c       = /tmp/rp-after/target/release/rpbench  run --alloc crpmalloc
#   before2 = the BEFORE binary again (A/A control: the noise floor)
# Repetition is the outermost loop (reps spread over the whole session); inside, every
# set × thread count runs all four variants back to back, the order rotated by one each
# repetition (and by the config index, so positions also vary between configs).
# Arguments: exactly the sets of benches/src/bin/rpbench/sets.rs at scale 1 (no --loops
# reduction); classic sets at threads 1,2,8, hand-off sets at 1 and 4 producers.
set -u
REPS=${1:-8}
OUT=${2:-/tmp/rp-pair-raw.txt}
BEFORE=${BEFORE:-/tmp/rp-before/target/release/rpbench}
AFTER=${AFTER:-/tmp/rp-after/target/release/rpbench}

declare -A ARGS THREADS
SETS=(std1 std2 larson realloc handoff-small handoff-medium handoff-large handoff-mixed)
ARGS[std1]="--mode random --dist even --min 16 --max 1000 --cross-rate 2 --allocs 50000 --op-count 5000 --loops 150"
ARGS[std2]="--mode random --dist linear --min 16 --max 8000 --cross-rate 2 --allocs 50000 --op-count 5000 --loops 80"
ARGS[larson]="--mode larson --dist even --min 16 --max 1000 --allocs 20000 --op-count 5000 --rounds 4 --loops 20"
ARGS[realloc]="--mode realloc --dist even --min 16 --max 4000 --allocs 2000 --op-count 2000 --cross-rate 0 --loops 20"
ARGS[handoff-small]="--mode handoff --mix small --batch 200 --queue 4 --blocks 10000000"
ARGS[handoff-medium]="--mode handoff --mix medium --batch 200 --queue 4 --blocks 1000000"
ARGS[handoff-large]="--mode handoff --mix large --batch 16 --queue 4 --blocks 20000"
ARGS[handoff-mixed]="--mode handoff --mix mixed --batch 200 --queue 4 --blocks 400000"
for s in std1 std2 larson realloc; do THREADS[$s]="1 2 8"; done
for s in handoff-small handoff-medium handoff-large handoff-mixed; do THREADS[$s]="1 4"; done

read -r -a VARIANTS <<< "${VARIANTS:-before after c before2}"
NV=${#VARIANTS[@]}
run_variant() { # variant args...
  local v=$1; shift
  case $v in
    before|before2) "$BEFORE" run --alloc ours "$@" --quiet ;;
    after)          "$AFTER"  run --alloc ours "$@" --quiet ;;
    c)              "$AFTER"  run --alloc crpmalloc "$@" --quiet ;;
  esac
}

START=$(date +%s)
echo "# start $(date -Is) reps=$REPS before=$BEFORE after=$AFTER" >> "$OUT"
for ((rep = 1; rep <= REPS; rep++)); do
  cfg=0
  for s in "${SETS[@]}"; do
    for t in ${THREADS[$s]}; do
      if [[ -n "${CONFIGS:-}" && " $CONFIGS " != *" $s:$t "* ]]; then continue; fi
      for ((k = 0; k < NV; k++)); do
        v=${VARIANTS[$(((k + rep + cfg) % NV))]}
        # shellcheck disable=SC2086
        line=$(run_variant "$v" ${ARGS[$s]} --threads "$t" 2>/dev/null | grep '^RESULT')
        echo "rep=$rep set=$s t=$t var=$v pos=$k $line" >> "$OUT"
      done
      cfg=$((cfg + 1))
    done
  done
  echo "# rep $rep done at $(( $(date +%s) - START )) s" | tee -a "$OUT"
done
echo "# end $(date -Is) total $(( $(date +%s) - START )) s" >> "$OUT"
