#!/usr/bin/env bash
# Incremental node-gyp build of the CPU addon, serialized with a lock so parallel builds never collide.
set -euo pipefail
cd "$(dirname "$0")/.."
# Compile against the running node's own headers when it ships them (no header download from nodejs.org).
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix="$(cd "$(dirname "$(command -v node)")/.." && pwd)"
  if [ -f "$prefix/include/node/node_api.h" ] && [ -f "$prefix/include/node/common.gypi" ]; then export npm_config_nodedir="$prefix"; fi
fi
exec flock /tmp/gradzip-build.lock bash -c '
  if [ -f build/Makefile ] && [ -z "${GRADZIP_REBUILD:-}" ]; then node node_modules/node-gyp/bin/node-gyp.js configure >/dev/null && node node_modules/node-gyp/bin/node-gyp.js build -j 2
  else node node_modules/node-gyp/bin/node-gyp.js rebuild -j 2; fi'
