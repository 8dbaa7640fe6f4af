# Shared by scripts/bench.sh and scripts/scale.sh (sourced, not run): one timed load-generator run recorded as a
# line of $RESULTS, and the statistics over those lines.
# The caller defines: log, DURATION, WARMUP, WORK, RESULTS (one line per run: KEY rps p50 p99 p999), FAILURES.

# The plan every Tollgate under load is configured with (a JSON object for the daemon configuration's "plans"):
# the check's scope, and quotas high enough never to deny, so that every check and meter is counted.
BENCH_PLAN='{ "id": "bench", "entitlements": ["read", "write"],
      "quotas": [{ "meter": "requests", "period": "month", "limit": 1000000000000000 },
                 { "meter": "bytes", "period": "month", "limit": 1000000000000000 }],
      "rate_per_second": 0, "burst": 0 }'

# `run_loadgen KEY LABEL COMMAND...`: runs COMMAND (the load generator with its mode, socket and load shape) for
# DURATION after WARMUP, bounded in time, and appends its RESULT to $RESULTS under KEY. A failed run is counted
# in FAILURES and logged with LABEL.
run_loadgen() {
    local key=$1 label=$2 out status line
    shift 2
    set +e
    out=$(timeout -k 5 "$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 30 }')" \
        "$@" --duration "$DURATION" --warmup "$WARMUP" 2>"$WORK/loadgen.err")
    status=$?
    set -e
    line=$(grep '^RESULT ' <<<"$out" | tail -1 || true)
    if ((status != 0)) || [ -z "$line" ]; then
        FAILURES=$((FAILURES + 1))
        log "FAILED: $label (exit $status): $(head -c 600 "$WORK/loadgen.err" | tr '\n' ' ')"
        [ -n "$line" ] || return 0
    fi
    local rps p50 p99 p999
    rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.* p50_us=([0-9.]+).*/\1/' <<<"$line")
    p99=$(sed -E 's/.* p99_us=([0-9.]+).*/\1/' <<<"$line")
    p999=$(sed -E 's/.* p999_us=([0-9.]+).*/\1/' <<<"$line")
    echo "$key $rps $p50 $p99 $p999" >>"$RESULTS"
    log "$(printf '%s %10s req/s  p50 %8s us  p99 %8s us' "$label" "$rps" "$p50" "$p99")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# `stat_of KEY rps|p50|p99|p999`: the median of that field over the runs recorded under KEY.
stat_of() {
    local col
    case $2 in rps) col=2 ;; p50) col=3 ;; p99) col=4 ;; p999) col=5 ;; esac
    awk -v k="$1" -v c="$col" '$1 == k { print $c }' "$RESULTS" | median
}

runs_of() { awk -v k="$1" '$1 == k' "$RESULTS" | wc -l | tr -d ' '; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
