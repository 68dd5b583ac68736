// Random-k, k = 1% of n (indices regenerated from the seed; only values travel).
import { gz, type Kernel } from './common';

export const kernel: Kernel = {
  name: 'randomk',
  configs: [{ codec: 'randomk-1%', make: (threads: number) => gz.randomk({ ratio: 0.01, threads }) }],
};
