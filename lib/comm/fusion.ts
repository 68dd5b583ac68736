// Fusion buffer planning: many small tensors travel as one packet (one header, one round of latency).
// Tensors below minCompressSize go to the uncompressed (float32) fusion buffer; the others to the
// compressed one. Each buffer is cut when it would exceed fusionBytes (a tensor larger than the buffer
// travels alone). Tensor order is kept inside each buffer, so every rank builds the same plan.

export interface FusionPlan {
  /** indices of the member tensors, in order */
  members: number[];
  /** total elements */
  total: number;
  /** whether this buffer is compressed */
  compressed: boolean;
}

export function planFusion(lengths: number[], opts: { minCompressSize: number; fusionBytes: number }): FusionPlan[] {
  const cap = Math.max(1, Math.floor(opts.fusionBytes / 4));
  const plans: FusionPlan[] = [];
  const open: Record<'c' | 'u', FusionPlan | null> = { c: null, u: null };
  lengths.forEach((n, i) => {
    const compressed = n >= opts.minCompressSize;
    const k = compressed ? 'c' : 'u';
    let p = open[k];
    if (p && p.total + n > cap) p = null;
    if (!p) {
      p = { members: [], total: 0, compressed };
      plans.push(p);
      open[k] = p;
    }
    p.members.push(i);
    p.total += n;
  });
  return plans;
}
