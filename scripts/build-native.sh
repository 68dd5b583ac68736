#!/usr/bin/env bash
# Incremental node-gyp build of the CPU addon, serialized with a lock so parallel builds never collide.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/gradzip-build.lock bash -c '
  if [ -f build/Makefile ] && [ -z "${GRADZIP_REBUILD:-}" ]; then node node_modules/node-gyp/bin/node-gyp.js configure >/dev/null && node node_modules/node-gyp/bin/node-gyp.js build -j 2
  else node node_modules/node-gyp/bin/node-gyp.js rebuild -j 2; fi'
