#!/usr/bin/env bash
# make bench: the collection's defaults against the seed's commands and pgBackRest.
# bench/bench.py is the command line (harness/, methods/, report/ do the work, see its docstring);
# this only picks the venv's Python and passes the knobs on.
#
#   make bench                      ~1 GiB TodoDb, 2 alternating rounds, scale study, docs/performance.md
#   BENCH_SIZE_MB=200 make bench    quick mode (a few minutes)
#   BENCH_EXPLORE=1 make bench      exploratory run of candidate defaults (compression levels, formats, jobs)
#   BENCH_INCREMENTAL=1 make bench  incremental base backups on PostgreSQL 18 only (no PostgreSQL 15 preparation)
#   BENCH_WAL=1 make bench          WAL push only (segments/s of archive_command; BENCH_WAL_SEGMENTS, default 32)
#
# Other knobs (environment, or the matching bench.py option): BENCH_ROUNDS (2), BENCH_SIZES
# (scale study sizes in MB, "none" to skip), BENCH_WORK_DIR, BENCH_NO_DOCS=1, BENCH_KEEP=1, BENCH_NO_DR=1
# (skip the dr_restore.yml drills).
# Needs root (throwaway PostgreSQL clusters, dropping the page cache); installs nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${ROOT}/.venv/bin/python"

if [[ ! -x "$PYTHON" ]]; then
  echo "bench: ${PYTHON} is missing; run 'make venv' (or use 'make bench')" >&2
  exit 2
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "bench: must run as root (it creates a PostgreSQL cluster and drops the page cache)" >&2
  exit 2
fi

args=()
[[ "${BENCH_EXPLORE:-0}" == 1 ]] && args+=(--explore)
[[ "${BENCH_NO_DOCS:-0}" == 1 ]] && args+=(--no-docs)
[[ "${BENCH_KEEP:-0}" == 1 ]] && args+=(--keep)

exec "$PYTHON" "${ROOT}/bench/bench.py" "${args[@]}" "$@"
