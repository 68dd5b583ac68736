// Markdown speedup table from a bench/netns results file: time, and speedup against OpenMPI's default
// float32 all-reduce / against its ring algorithm forced.
import { readFileSync } from 'node:fs';
const runs = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const names = runs[0].results.map((r) => r.name);
const RING = 'fp32 MPI_Allreduce (ring forced)';
console.log(`\n${runs[0].mb} MB gradient (${runs[0].n} float32), P = ${runs[0].P}, median of ${runs[0].reps} reps (slowest rank); ` +
  `speedup vs OpenMPI's default fp32 all-reduce / vs its ring algorithm\n`);
console.log(`| algorithm | ${runs.map((r) => r.rate).join(' | ')} |`);
console.log(`| --- | ${runs.map(() => '---').join(' | ')} |`);
for (const name of names) {
  const cells = runs.map((run) => {
    const base = run.results[0].ms, ring = run.results.find((x) => x.name === RING)?.ms;
    const r = run.results.find((x) => x.name === name);
    if (!r) return '–';
    if (name === names[0] || name === RING) return `${(r.ms / 1000).toFixed(2)} s`;
    return `${(r.ms / 1000).toFixed(2)} s (${(base / r.ms).toFixed(1)}× / ${ring ? (ring / r.ms).toFixed(1) : '?'}×)`;
  });
  console.log(`| ${name} | ${cells.join(' | ')} |`);
}
