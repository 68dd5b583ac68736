#!/usr/bin/env bash
# Builds the optional MPI transport addon build/Release/gradzip_mpi.node from native/comm/mpi.cc with the
# MPI compiler wrapper (mpicxx). Does nothing (exit 0) when MPI is not installed (scripts/install-mpi.sh
# installs Debian's OpenMPI). Separate from binding.gyp so that the main addon never depends on MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(node scripts/has-mpi.js)" != "1" ]; then
  echo "build-mpi: no MPI found (mpicxx + mpi.h); the MPI transport is not built. Run scripts/install-mpi.sh first."
  exit 0
fi
NODE_INC=""
for d in "$(dirname "$(dirname "$(command -v node)")")/include/node" "$HOME/.cache/node-gyp/$(node -p process.versions.node)/include/node"; do
  if [ -f "$d/node_api.h" ]; then NODE_INC="$d"; break; fi
done
if [ -z "$NODE_INC" ]; then
  node node_modules/node-gyp/bin/node-gyp.js install >/dev/null
  NODE_INC="$HOME/.cache/node-gyp/$(node -p process.versions.node)/include/node"
fi
NAPI_INC="$(node -p "require('node-addon-api').include_dir")"
mkdir -p build/Release
OUT=build/Release/gradzip_mpi.node
if [ -f "$OUT" ] && [ "$OUT" -nt native/comm/mpi.cc ] && [ -z "${GRADZIP_REBUILD:-}" ]; then
  echo "build-mpi: $OUT is up to date"; exit 0
fi
exec flock /tmp/gradzip-build-mpi.lock mpicxx -std=c++17 -O2 -fPIC -shared -pthread -fexceptions \
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED \
  -I"$NODE_INC" -I"$NAPI_INC" native/comm/mpi.cc -o "$OUT"
