// 1-bit SGD: one sign bit per element, two class means per bucket of 512.
import { gz, type Kernel } from './common';

export const kernel: Kernel = {
  name: 'onebit',
  configs: [{ codec: 'onebit', make: (threads: number) => gz.onebit({ bucketSize: 512, threads }) }],
};
