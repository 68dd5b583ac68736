#!/usr/bin/env bash
# Installs Debian's OpenMPI (runtime + headers) so that the gradzip_mpi addon builds and the mpirun tests run.
# Idempotent: does nothing when mpicc and mpirun are already there. Needs root (CI runs as root).
set -euo pipefail
if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
  echo "install-mpi: OpenMPI already present ($(mpirun --version 2>/dev/null | head -n1))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev
mpirun --version | head -n1
