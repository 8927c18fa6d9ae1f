#!/usr/bin/env bash
# The last lines of `make test`: how many tests each suite ran, read from the summaries the
# suites wrote under .build/test-logs (so a run that collected fewer tests is seen at a glance).
set -euo pipefail
logs=${1:-.build/test-logs}
swift=$(grep -Eo 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$logs/swift.txt" | tail -1 || true)
python=$(grep -E '^[0-9]+ (passed|failed)' "$logs/python.txt" | tail -1 | sed -E 's/ in [0-9.]+s.*//' || true)
inputs=0
for log in "$logs"/replay-*.txt; do
    count=$(grep -Eo 'replayed [0-9]+ inputs' "$log" | grep -Eo '[0-9]+' || echo 0)
    inputs=$((inputs + count))
done
echo "make test: Swift: ${swift:-no summary}; Python: ${python:-no summary}; fuzz replay: $inputs inputs under ASan"
