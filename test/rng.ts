// Deterministic data for the tests: mulberry32, a small 32-bit generator (fixed seeds, reproducible runs).
function mulberry32Bits(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
/** Uniform in [0, 1). */
export function rng(seed: number): () => number {
  const next = mulberry32Bits(seed);
  return () => next() / 4294967296;
}
/** Uniform in the open interval (0, 1) (safe under log). */
export function rngOpen(seed: number): () => number {
  const next = mulberry32Bits(seed);
  return () => (next() + 0.5) / 4294967296;
}
