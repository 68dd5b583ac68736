// Prints 1 when an MPI C++ compiler wrapper (mpicxx) and mpi.h are found, else 0 (used by build-mpi.sh).
const { execFileSync } = require('child_process');
try {
  const flags = execFileSync('mpicxx', ['--showme:compile'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const fs = require('fs'), path = require('path');
  const inc = flags.split(/\s+/).filter((f) => f.startsWith('-I')).map((f) => f.slice(2));
  console.log(inc.some((d) => fs.existsSync(path.join(d, 'mpi.h'))) ? 1 : 0);
} catch {
  console.log(0);
}
