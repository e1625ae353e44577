#!/usr/bin/env bash
# Fuzzing smoke run: builds the fuzz targets and runs each for a time budget, seeded from
# fuzz/seeds. Exits non-zero if any target crashes (panic, sanitizer report, timeout or
# memory blow-up), naming the input that did it.
#
#   fuzz/smoke.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 20; the targets default to all of them. Needs rustup; the
# nightly toolchain and cargo-fuzz are installed when missing. New inputs found go to
# fuzz/corpus/<target>/ (not committed), crashes to fuzz/artifacts/<target>/.
#
# FUZZ_SANITIZER (default none) picks cargo-fuzz's sanitizer. The project forbids unsafe
# code, so AddressSanitizer only watches dependencies; without it the build and the runs
# are quicker, which suits a CI smoke run. Use FUZZ_SANITIZER=address for long runs.
set -euo pipefail

budget=${1:-20}
sanitizer=${FUZZ_SANITIZER:-none}
shift || true
cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for every target; `fuzz run` below then finds it up to date.
cargo +nightly fuzz build --sanitizer "$sanitizer"

# A single input running 10 s, or 2 GB of memory, is a runaway: libFuzzer stops there.
failed=()
for target in "${targets[@]}"; do
    echo "--- fuzz $target for ${budget}s"
    mkdir -p "corpus/$target"
    if ! cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$target")
        echo "!!! $target failed; input(s) in $(pwd)/artifacts/$target/:"
        ls -t "artifacts/$target" 2>/dev/null | head -n 5 | sed "s|^|    |"
        echo "    reproduce: (cd fuzz && cargo +nightly fuzz run --sanitizer $sanitizer $target artifacts/$target/<file>)"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing found a crash in: ${failed[*]}"
    exit 1
fi
echo "fuzzing smoke run: no crash in ${targets[*]} (${budget}s each)"
