#!/usr/bin/env bash
# Longer fuzzing than npm test does: the codec's property tests and the router's doors (the
# handshake over WebSocket, the long-poll API) with many generated inputs each.
#   npm run fuzz [-- RUNS]          (default 20000 cases per property; a few minutes)
#   POSTERN_FUZZ_SEED=N npm run fuzz   replays a failure's seed
set -euo pipefail
cd "$(dirname "$0")/.."
export POSTERN_FUZZ_RUNS="${1:-20000}"
npx tsc -b
node --test --test-timeout=3600000 packages/protocol/dist/test/codec.test.js packages/router/dist/test/fuzz.test.js
