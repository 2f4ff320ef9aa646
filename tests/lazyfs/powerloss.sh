#!/usr/bin/env bash
# Power-loss runs on a real filesystem: LazyFS keeps written data in its own cache until the
# file is fsynced and drops everything unsynced on `lazyfs::clear-cache`. Each iteration
# starts 1-3 writer processes (1-2 threads each) of examples/powerloss on a database in the
# LazyFS mount, SIGKILLs them after 0.2-3 s, cuts power (clear-cache), and runs the checker.
# With CUT=crash the power is cut instead by LazyFS killing itself at the next fsync of
# pages.db or wal.log while the writers run (the writers see I/O errors), and LazyFS is
# mounted again for the check; CUT=mixed (the default) draws one of the two per iteration.
# See tests/lazyfs/README.md.
#
#   tests/lazyfs/powerloss.sh [ITERATIONS]          (default 500)
#
# Environment:
#   LAZYFS_BIN     the lazyfs binary (required; LazyFS is not built by this script)
#   FRESH_EVERY    start a fresh database every this many iterations (50)
#   SEED           seed of the per-iteration choices and of the writers (the time)
#   RUN_MS_MIN/MAX how long writers run before the kill, in ms (200 / 3000)
#   CUT            clear, crash or mixed (the default): how the power is cut
#   CRASH_TARGETS  the crash points to pick from, comma-separated TIMING:FILE
#                  (after:pages.db,before:pages.db,after:wal.log,before:wal.log)
#   WRITER_CPUS    pin the writers to these CPUs (taskset list, e.g. 0): more preemption
#                  inside commits and checkpoints
#   LAZYFS_CACHE   LazyFS cache size, preallocated at each mount ("256mb")
#   WORK_DIR       scratch directory (a fresh one under /tmp)
#   FAIL_DIR       where a failing iteration's image and logs are kept (/tmp/powerloss-failure-<seed>)
#   POWERLOSS_BIN  a prebuilt driver (else: cargo build --release --example powerloss)
set -euo pipefail

ITERATIONS=${1:-500}
FRESH_EVERY=${FRESH_EVERY:-50}
SEED=${SEED:-$(date +%s)}
RUN_MS_MIN=${RUN_MS_MIN:-200}
RUN_MS_MAX=${RUN_MS_MAX:-3000}
LAZYFS_CACHE=${LAZYFS_CACHE:-256mb}
CUT=${CUT:-mixed}
CRASH_TARGETS=${CRASH_TARGETS:-after:pages.db,before:pages.db,after:wal.log,before:wal.log}
WRITER_CPUS=${WRITER_CPUS:-}
FAIL_DIR=${FAIL_DIR:-/tmp/powerloss-failure-$SEED}
WRITERS_MAX=3
THREADS_MAX=2
CLEAR_TIMEOUT_S=60
# How long an armed crash fault may wait for its fsync before the cut is made by hand.
CRASH_WAIT_MS=3000
CHECK_TIMEOUT_S=600

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "powerloss: $*" >&2; exit 2; }

[[ $ITERATIONS =~ ^[0-9]+$ && $ITERATIONS -gt 0 ]] || die "ITERATIONS must be a positive number"
[[ $FRESH_EVERY =~ ^[0-9]+$ && $FRESH_EVERY -gt 0 ]] || die "FRESH_EVERY must be a positive number"
(( RUN_MS_MIN > 0 && RUN_MS_MIN <= RUN_MS_MAX )) || die "need 0 < RUN_MS_MIN <= RUN_MS_MAX"
[[ $CUT == clear || $CUT == crash || $CUT == mixed ]] || die "CUT must be clear, crash or mixed"
IFS=, read -r -a CRASH_POINTS <<<"$CRASH_TARGETS"
for point in "${CRASH_POINTS[@]}"; do
    [[ $point =~ ^(before|after):(pages\.db|wal\.log)$ ]] || die "bad crash target $point"
done
PIN=()
if [[ -n $WRITER_CPUS ]]; then
    command -v taskset >/dev/null || die "taskset is missing (Debian package util-linux)"
    PIN=(taskset -c "$WRITER_CPUS")
fi
[[ -n ${LAZYFS_BIN:-} && -x $LAZYFS_BIN ]] ||
    die "set LAZYFS_BIN to a built lazyfs binary (see tests/lazyfs/README.md)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing"
command -v fusermount3 >/dev/null || die "fusermount3 is missing (Debian package fuse3)"

if [[ -n ${POWERLOSS_BIN:-} ]]; then
    BIN=$POWERLOSS_BIN
else
    (cd "$REPO" && cargo build --release --quiet --example powerloss)
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/examples/powerloss
fi
[[ -x $BIN ]] || die "no driver at $BIN"

WORK=${WORK_DIR:-$(mktemp -d /tmp/powerloss.XXXXXX)}
ROOT=$WORK/root         # LazyFS's backing directory: what is durable
MNT=$WORK/mnt           # the LazyFS mount the writers use
LOGS=$WORK/logs         # ack logs and the state file (outside the mount)
FIFO=$WORK/faults.fifo
LAZYFS_LOG=$WORK/lazyfs.log
DB=$MNT/db
mkdir -p "$ROOT" "$MNT" "$LOGS"

LAZYFS_PID=
WRITER_PIDS=()

# Waits (up to 10 s) until a process that is not a job of this shell is gone.
wait_gone() {
    local waited=0
    while kill -0 "$1" 2>/dev/null && (( waited++ < 1000 )); do sleep 0.01; done
}

cleanup() {
    local pid
    for pid in "${WRITER_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        { wait "$pid"; } 2>/dev/null || true
    done
    # (also a dead mount, which mountpoint(1) cannot tell)
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    if [[ -n $LAZYFS_PID ]]; then
        kill "$LAZYFS_PID" 2>/dev/null || true
        wait_gone "$LAZYFS_PID"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_lazyfs() {
    # No fifo_path_completed: LazyFS would block opening it until a reader appears; the
    # log line "cache is cleared" tells when a clear is done. No direct_io either: LazyFS
    # writes a direct-I/O write straight through, which would make every write durable.
    cat >"$WORK/lazyfs.toml" <<EOF
[faults]
fifo_path="$FIFO"
[cache]
apply_eviction=false
[cache.simple]
custom_size="$LAZYFS_CACHE"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile="$LAZYFS_LOG"
EOF
    [[ -f $WORK/lazyfs.out ]] && mv -f "$WORK/lazyfs.out" "$WORK/lazyfs.out.previous"
    "$LAZYFS_BIN" "$MNT" --config-path "$WORK/lazyfs.toml" \
        -o modules=subdir -o subdir="$ROOT" -f >"$WORK/lazyfs.out" 2>&1 &
    LAZYFS_PID=$!
    # Not a job of this shell: no "Killed" notice when it crashes itself (wait_gone polls).
    disown "$LAZYFS_PID"
    local waited=0
    until mountpoint -q "$MNT"; do
        kill -0 "$LAZYFS_PID" 2>/dev/null || { cat "$WORK/lazyfs.out" >&2; die "lazyfs exited"; }
        (( waited++ < 1200 )) || die "lazyfs did not mount within 120 s"
        sleep 0.1
    done
}

cleared_count() {
    local count
    count=$(grep -c "cache is cleared" "$LAZYFS_LOG" 2>/dev/null || true)
    echo "${count:-0}"
}

# Drops everything not fsynced, as a power cut would, and waits until LazyFS is done.
cut_power() {
    # Dirty pages of the killed writers' shared map of wal.shm sit in the kernel's page
    # cache; push them into LazyFS now (as unsynced data the clear drops), or the kernel
    # would write them back after the cut.
    sync -f "$MNT"
    local before waited=0
    before=$(cleared_count)
    echo "lazyfs::clear-cache" >"$FIFO"
    until (( $(cleared_count) > before )); do
        (( waited++ < CLEAR_TIMEOUT_S * 10 )) || die "lazyfs did not clear its cache in ${CLEAR_TIMEOUT_S} s"
        sleep 0.1
    done
}

# Cuts power by having LazyFS kill itself (losing its cache) right before or after the next
# fsync of pages.db or wal.log by any writer; if none comes in time, clears the cache and
# kills it by hand. Sets CUT_KIND. The mount is dead afterwards: see remount_lazyfs.
crash_lazyfs() {
    local timing file waited=0
    IFS=: read -r timing file <<<"${CRASH_POINTS[RANDOM % ${#CRASH_POINTS[@]}]}"
    echo "lazyfs::crash::timing=$timing::op=fsync::from_rgx=.*$file" >"$FIFO"
    CUT_KIND="crash-$timing-fsync-$file"
    while kill -0 "$LAZYFS_PID" 2>/dev/null; do
        if (( waited++ >= CRASH_WAIT_MS / 10 )); then
            CUT_KIND="crash-by-hand"
            cut_power
            kill -KILL "$LAZYFS_PID" 2>/dev/null || true
            break
        fi
        sleep 0.01
    done
    wait_gone "$LAZYFS_PID"
    LAZYFS_PID=
}

remount_lazyfs() {
    fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    mount_lazyfs
}

keep_failure() {
    local iteration=$1 why=$2
    mkdir -p "$FAIL_DIR"
    [[ -d $WORK/image ]] && cp -a "$WORK/image" "$FAIL_DIR/db-at-power-cut"
    cp -a "$LOGS" "$FAIL_DIR/logs"
    cp "$WORK"/check.out "$WORK"/lazyfs.out* "$FAIL_DIR/" 2>/dev/null || true
    echo "iteration $iteration (database $DATABASES, seed $SEED): $why" >"$FAIL_DIR/what.txt"
    echo "powerloss: FAILED at iteration $iteration: $why"
    echo "powerloss: the durable image at the power cut, the ack logs and the output are in $FAIL_DIR"
}

declare -A HISTOGRAM=() CUTS=()
CUT_KIND=
ACKED_TOTAL=0
IN_FLIGHT_TOTAL=0
DATABASES=0
FAILURES=0
STARTED=$SECONDS
RANDOM=$SEED

mount_lazyfs
echo "powerloss: $ITERATIONS iterations, seed $SEED, cut $CUT, fresh database every $FRESH_EVERY, work dir $WORK"
[[ $CUT == clear ]] || echo "powerloss: crash targets $CRASH_TARGETS"
[[ -z $WRITER_CPUS ]] || echo "powerloss: writers pinned to CPUs $WRITER_CPUS"

for (( iteration = 1; iteration <= ITERATIONS; iteration++ )); do
    kill -0 "$LAZYFS_PID" 2>/dev/null || die "lazyfs died before iteration $iteration"
    if (( (iteration - 1) % FRESH_EVERY == 0 )); then
        rm -rf "$DB" "$LOGS"
        mkdir -p "$LOGS"
        DATABASES=$(( DATABASES + 1 ))
    fi
    processes=$(( 1 + RANDOM % WRITERS_MAX ))
    threads_total=0
    WRITER_PIDS=()
    for (( writer = 0; writer < processes; writer++ )); do
        threads=$(( 1 + RANDOM % THREADS_MAX ))
        threads_total=$(( threads_total + threads ))
        "${PIN[@]}" "$BIN" writer "$DB" "$LOGS" "$writer" "$threads" $(( SEED * 100000 + iteration * 10 + writer )) \
            >"$LOGS/writer-$writer.out" 2>&1 &
        WRITER_PIDS+=($!)
    done
    key="${processes}p/${threads_total}t"
    HISTOGRAM[$key]=$(( ${HISTOGRAM[$key]:-0} + 1 ))
    run_ms=$(( RUN_MS_MIN + (RANDOM * 32768 + RANDOM) % (RUN_MS_MAX - RUN_MS_MIN + 1) ))
    sleep "$(printf '%d.%03d' $(( run_ms / 1000 )) $(( run_ms % 1000 )))"

    cut=$CUT
    if [[ $cut == mixed ]]; then
        if (( RANDOM % 2 )); then cut=crash; else cut=clear; fi
    fi
    check_flags=()
    # A writer may exit by itself only when the filesystem died under it (status 3, after
    # logging the failed operation; the checker tells I/O errors from wrong results).
    allowed_status=137
    if [[ $cut == crash ]]; then
        crash_lazyfs
        check_flags=(--filesystem-died)
        allowed_status=3
    fi
    early=
    for pid in "${WRITER_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for index in "${!WRITER_PIDS[@]}"; do
        status=0
        # (braces: bash's "Killed" notice goes to wait's stderr)
        { wait "${WRITER_PIDS[$index]}"; } 2>/dev/null || status=$?
        (( status == 137 || status == allowed_status )) ||
            early+=" writer $index exited with $status: $(tail -c 400 "$LOGS/writer-$index.out");"
    done
    WRITER_PIDS=()
    if [[ $cut == crash ]]; then
        remount_lazyfs
    else
        cut_power
        CUT_KIND=clear-cache
    fi
    CUTS[$CUT_KIND]=$(( ${CUTS[$CUT_KIND]:-0} + 1 ))
    rm -rf "$WORK/image"
    [[ -d $ROOT/db ]] && cp -a "$ROOT/db" "$WORK/image"

    status=0
    timeout "$CHECK_TIMEOUT_S" "$BIN" check "$DB" "$LOGS" "${check_flags[@]}" >"$WORK/check.out" 2>&1 ||
        status=$?
    summary=$(head -n 1 "$WORK/check.out")
    printf 'iteration %d: %s, %d ms, %s: %s\n' "$iteration" "$key" "$run_ms" "$CUT_KIND" "$summary" \
        >>"$WORK/checks.log"
    if [[ -n $early ]]; then
        FAILURES=1
        keep_failure "$iteration" "a writer did not run until the kill:$early"
        cat "$WORK/check.out"
        break
    fi
    if (( status != 0 )); then
        FAILURES=1
        keep_failure "$iteration" "check exited with $status"
        cat "$WORK/check.out"
        break
    fi
    [[ $summary =~ acked=([0-9]+)\ inflight=([0-9]+) ]] || die "unexpected check output: $summary"
    ACKED_TOTAL=$(( ACKED_TOTAL + BASH_REMATCH[1] ))
    IN_FLIGHT_TOTAL=$(( IN_FLIGHT_TOTAL + BASH_REMATCH[2] ))
    if (( iteration % 25 == 0 )); then
        echo "powerloss: iteration $iteration: $summary"
    fi
done

done_iterations=$(( iteration > ITERATIONS ? ITERATIONS : iteration ))
histogram=$(for key in "${!HISTOGRAM[@]}"; do echo "$key=${HISTOGRAM[$key]}"; done | sort | tr '\n' ' ')
echo "powerloss: iterations $done_iterations of $ITERATIONS (databases $DATABASES, seed $SEED, $(( SECONDS - STARTED )) s)"
echo "powerloss: processes/threads per iteration: $histogram"
echo "powerloss: power cuts: $(for kind in "${!CUTS[@]}"; do echo "$kind=${CUTS[$kind]}"; done | sort | tr '\n' ' ')"
echo "powerloss: acknowledged operations checked $ACKED_TOTAL, in flight at the cut $IN_FLIGHT_TOTAL"
echo "powerloss: failures $FAILURES"
(( FAILURES == 0 ))
