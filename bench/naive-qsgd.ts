// The naive baseline: QSGD written in plain TypeScript, the way a user would without gradzip.
// Bucketed, l2 norm, s = 4 levels, stochastic rounding with an xorshift32 generator (16 random bits per element),
// 4-bit codes (sign + 3-bit level) packed two per byte, one f32 scale per bucket. Same algorithm as the native
// qsgd fixed coding (not the same random numbers: the baseline does not implement Philox).

export function naiveQsgdMaxBytes(n: number, bucket = 512): number {
  return Math.ceil(n / bucket) * 4 + Math.ceil(n / 2) + 8;
}

export function naiveQsgdCompress(x: Float32Array, out: Uint8Array, seed = 1, s = 4, bucket = 512): number {
  const n = x.length;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  let rng = seed >>> 0 || 1;
  let pos = 0;
  let rbits = 0, rleft = 0;
  for (let start = 0; start < n; start += bucket) {
    const end = Math.min(n, start + bucket);
    let ss = 0;
    for (let i = start; i < end; i++) ss += x[i] * x[i];
    const norm = Math.sqrt(ss);
    dv.setFloat32(pos, norm, true);
    pos += 4;
    const r = norm > 0 ? s / norm : 0;
    let byte = 0, half = 0;
    for (let i = start; i < end; i++) {
      const v = x[i];
      const a = Math.min(Math.abs(v) * r, s);
      const l = Math.floor(a);
      if (rleft === 0) { rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0; rbits = rng; rleft = 2; }
      const u = rbits & 0xffff;
      rbits >>>= 16;
      rleft--;
      const z = l + (u < (a - l) * 65536 ? 1 : 0);
      const code = (z << 1) | (v < 0 && z > 0 ? 1 : 0);
      if (half === 0) { byte = code; half = 1; } else { out[pos++] = byte | (code << 4); half = 0; }
    }
    if (half) out[pos++] = byte;
  }
  return pos;
}

export function naiveQsgdDecompress(p: Uint8Array, out: Float32Array, s = 4, bucket = 512): void {
  const n = out.length;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  let pos = 0;
  for (let start = 0; start < n; start += bucket) {
    const end = Math.min(n, start + bucket);
    const w = dv.getFloat32(pos, true) / s;
    pos += 4;
    for (let i = start; i < end; i += 2) {
      const byte = p[pos++];
      const c0 = byte & 15, c1 = byte >> 4;
      out[i] = (c0 & 1 ? -1 : 1) * w * (c0 >> 1);
      if (i + 1 < end) out[i + 1] = (c1 & 1 ? -1 : 1) * w * (c1 >> 1);
    }
  }
}
