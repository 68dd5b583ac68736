// TernGrad: values in {-1, 0, 1} * max|v| per bucket of 512 (2-bit codes).
import { gz, type Kernel } from './common';

export const kernel: Kernel = {
  name: 'terngrad',
  configs: [{ codec: 'terngrad', make: (threads: number) => gz.terngrad({ bucketSize: 512, threads }) }],
};
