# Shared by the benchmark scripts (sourced, not run). For scripts/bench.sh and scripts/scale.sh: one timed
# load-generator run recorded as a line of $RESULTS, and the statistics over those lines (the caller defines: log,
# DURATION, WARMUP, WORK, RESULTS (one line per run: KEY rps p50 p99 p999), FAILURES). For scripts/bench-proxy.sh
# and scripts/bench-grpc.sh: the comparison table and BENCH lines (below).

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

# The comparison tables of scripts/bench-proxy.sh and scripts/bench-grpc.sh: a system under test beside a baseline
# at each point. The caller declares `declare -A RPS P50 P99`, each "SYSTEM,C" holding one value per run separated
# by spaces (`record_point`), and the arrays SYSTEMS ("name|target" entries, the order of the rows) and CONNECTIONS.

# `record_point SYSTEM C RPS P50 P99`: one run's numbers at C.
record_point() {
    RPS[$1,$2]+="$3 "
    P50[$1,$2]+="$4 "
    P99[$1,$2]+="$5 "
}

# `median_of "V1 V2 ..."`: the median of the values (the lower middle one for an even count), or - for none.
median_of() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else print a[int((NR + 1) / 2)] }'; }

# `comparison_table TITLE TOOL BASELINE SHORT COUNT_LABEL RATE_LABEL`: the title line (machine, date, TOOL, duration,
# runs, the load average before, from LOAD_START, and now), then per point and system the medians and their ratios
# to BASELINE's at the same point (columns rps/SHORT and p99/SHORT).
comparison_table() {
    local title=$1 tool=$2 baseline=$3 short=$4 count_label=$5 rate_label=$6 c entry system rps p50 p99 base_rps base_p99
    echo "$title: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(date -u +%F)," \
        "$tool ${DURATION}s x $RUNS run(s) per point, medians; load average before $LOAD_START, after $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-6s %-16s %11s %9s %9s %12s %12s\n' "$count_label" system "$rate_label" "p50 us" "p99 us" "rps/$short" "p99/$short"
    for c in "${CONNECTIONS[@]}"; do
        base_rps=$(median_of "${RPS[$baseline,$c]}")
        base_p99=$(median_of "${P99[$baseline,$c]}")
        for entry in "${SYSTEMS[@]}"; do
            system=${entry%%|*}
            rps=$(median_of "${RPS[$system,$c]}") p50=$(median_of "${P50[$system,$c]}") p99=$(median_of "${P99[$system,$c]}")
            printf '%-6s %-16s %11.0f %9s %9s %12s %12s\n' "$c" "$system" "$rps" "$p50" "$p99" \
                "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')" \
                "$(awk -v a="$p99" -v b="$base_p99" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')"
        done
    done
}

# `bench_lines OP PREFIX`: one `BENCH {...}` line per point and system (its name after PREFIX), medians.
bench_lines() {
    local op=$1 prefix=$2 c entry system
    for c in "${CONNECTIONS[@]}"; do
        for entry in "${SYSTEMS[@]}"; do
            system=${entry%%|*}
            printf 'BENCH {"system":"%s%s","op":"%s","connections":%s,"rps":%.0f,"p50_us":%s,"p99_us":%s,"runs":%s}\n' \
                "$prefix" "$system" "$op" "$c" "$(median_of "${RPS[$system,$c]}")" "$(median_of "${P50[$system,$c]}")" \
                "$(median_of "${P99[$system,$c]}")" "$RUNS"
        done
    done
}

# `secret_in_logs FILE...`: true (and logged) when a token secret appears in any of the files.
secret_in_logs() {
    if grep -qE "tg_(live|test)_[A-Za-z0-9]{20,}" "$@" 2>/dev/null; then
        log "a token secret appeared in a log"
        return 0
    fi
    return 1
}
