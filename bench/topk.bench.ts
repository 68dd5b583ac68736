// Exact top-k by magnitude, k = 1% of n, f32 and f16 values.
import { gz, type Kernel } from './common';

export const kernel: Kernel = {
  name: 'topk',
  configs: (['f32', 'f16'] as const).map((values) => ({
    codec: `topk-1%-${values}`,
    make: (threads: number) => gz.topk({ ratio: 0.01, values, threads }),
  })),
};
