#!/usr/bin/env bash
# Fails when an x86 intrinsic of std::arch is compiled out of line in the release binary.
#
# An intrinsic only becomes one instruction when it is inlined into a function compiled with
# its target feature. A closure inside a `#[target_feature]` kernel is compiled without those
# features; when LLVM does not inline it (a large body, or one used twice), every intrinsic it
# calls stays a function call. That made the log-softmax backward 40x slower than it should
# be (session 14) with every test still passing. This lists each out-of-line intrinsic and
# the functions that call it.
#
# Usage: tools/check_intrinsics_inlined.sh [BINARY]   (default: builds target/release/pretext)
# Needs binutils (nm, objdump).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin=target/release/pretext
fi
syms=$(nm -C "$bin" | awk '$2 ~ /^[tT]$/' | grep -oE 'core::core_arch::x86(_64)?::[a-z0-9_]+::_[a-z0-9_]+' | sort -u || true)
dis=$(mktemp)
trap 'rm -f "$dis"' EXIT
[ -z "$syms" ] || objdump -d --no-show-raw-insn -C "$bin" > "$dis"
bad=0
for s in $syms; do
    # Only pretext's own code counts (std's feature detection and dependencies such as
    # aho-corasick keep some out of line on purpose).
    callers=$(awk -v s="$s" '/^[0-9a-f]+ <.*>:$/ {fn=$0} index($0, "call") && index($0, s) {print "    " fn}' "$dis" | sort -u | grep 'pretext::' || true)
    if [ -n "$callers" ]; then
        echo "out of line: $s, called from:"
        echo "$callers"
        bad=1
    fi
done
if [ "$bad" = 0 ]; then
    echo "ok: every std::arch intrinsic in pretext's code is inlined ($bin)"
fi
exit $bad
