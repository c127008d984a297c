#!/usr/bin/env bash
# `mmpool exporter` against the tools operators run: a process holds a known
# number of bytes of a shared pool (through the C library, from Python's
# ctypes), `promtool check metrics` (Debian's `prometheus` package) checks
# the names and types that `mmpool status --prometheus` prints and the
# exporter serves, then a real Prometheus server, on loopback only, scrapes
# the exporter every second and its HTTP API must answer the held bytes for
# mmpool_in_use_bytes. Everything started here is stopped at the end; every
# wait is bounded (about 30 s in all when something is wrong).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/packages.sh
. scripts/lib/packages.sh
mmpool_need_packages prometheus python3 curl

cargo build -q --lib --bin mmpool
BIN=$PWD/target/debug/mmpool
LIB=$PWD/target/debug/libmmpool.so
WORK=$(mktemp -d)
NAME="prom-$$"
HELD=$((3 * 4096 + 12345))
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    "$BIN" unlink "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "test-prometheus: $*" >&2; exit 1; }

# Polls "$@" every 0.2 s until it succeeds, for at most 15 s.
until_ok() {
    local tries=75
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.2
    done
}

# The workload: four leases (3 x 4096 + 12345 bytes) of a 1 MiB shared pool,
# held until this script kills the process; `ready` says they are held.
python3 - "$LIB" "$NAME" "$WORK/ready" <<'EOF' &
import ctypes, pathlib, sys, time
lib = ctypes.CDLL(sys.argv[1])
class Lease(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("nbytes", ctypes.c_uint64)]
pool = ctypes.c_void_p()
assert lib.mmpool_open_shared(sys.argv[2].encode(), 1 << 20, 1, ctypes.byref(pool)) == 0
leases = [Lease() for _ in range(4)]
for lease, n in zip(leases, [4096, 4096, 4096, 12345]):
    assert lib.mmpool_acquire(pool, ctypes.c_uint64(n), ctypes.byref(lease)) == 0
pathlib.Path(sys.argv[3]).touch()
time.sleep(600)
EOF
pids+=($!)
until_ok test -e "$WORK/ready" || fail "the workload did not start"

echo "--- promtool check metrics: mmpool status --prometheus"
"$BIN" status "$NAME" --prometheus >"$WORK/status.txt"
grep -qx "mmpool_in_use_bytes{pool=\"$NAME\"} $HELD" "$WORK/status.txt" || fail "status: $(cat "$WORK/status.txt")"
promtool check metrics <"$WORK/status.txt" || fail "promtool rejects mmpool status --prometheus"

echo "--- mmpool exporter, scraped with curl"
"$BIN" exporter "$NAME" --listen 127.0.0.1:0 >"$WORK/exporter.out" 2>&1 &
pids+=($!)
until_ok grep -q "http://" "$WORK/exporter.out" || fail "the exporter did not start: $(cat "$WORK/exporter.out")"
TARGET=$(sed -n 's|.*http://\([0-9.:]*\)/metrics.*|\1|p' "$WORK/exporter.out")
curl -sf --max-time 5 "http://$TARGET/metrics" >"$WORK/scrape.txt" || fail "no answer from http://$TARGET/metrics"
promtool check metrics <"$WORK/scrape.txt" || fail "promtool rejects the exporter's /metrics"
grep -qx "mmpool_process_held_bytes{pool=\"$NAME\",pid=\"${pids[0]}\"} $HELD" "$WORK/scrape.txt" ||
    fail "the exporter does not show the workload's process: $(grep process_held "$WORK/scrape.txt")"

echo "--- a Prometheus server scraping the exporter"
PROM_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: mmpool
    static_configs:
      - targets: ["$TARGET"]
EOF
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "promtool rejects the scrape config"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
pids+=($!)
query() {
    curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/api/v1/query" \
        --data-urlencode "query=mmpool_in_use_bytes{pool=\"$NAME\",job=\"mmpool\"}" >"$WORK/answer.json" &&
        python3 - "$WORK/answer.json" "$HELD" <<'EOF'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer["data"]["result"]
sys.exit(0 if answer["status"] == "success" and len(result) == 1 and result[0]["value"][1] == sys.argv[2] else 1)
EOF
}
if ! until_ok query; then
    cat "$WORK/prometheus.log" >&2
    fail "Prometheus did not answer mmpool_in_use_bytes = $HELD (last answer: $(cat "$WORK/answer.json" 2>/dev/null))"
fi
echo "Prometheus at 127.0.0.1:$PROM_PORT scraped $TARGET: $(cat "$WORK/answer.json")"
echo "test-prometheus: passed"
