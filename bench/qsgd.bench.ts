// QSGD kernels: s = 4, bucket 512, l2, the three codings; plus the plain-TypeScript baseline.
import { gz, relError, type Case, type Kernel } from './common';
import { naiveQsgdCompress, naiveQsgdDecompress, naiveQsgdMaxBytes } from './naive-qsgd';

export const kernel: Kernel = {
  name: 'qsgd',
  configs: (['fixed', 'gamma', 'sparse'] as const).map((coding) => ({
    codec: `qsgd-${coding}`,
    make: (threads: number) => gz.qsgd({ levels: 4, bucketSize: 512, norm: 'l2', coding, threads }),
  })),
  extra: (x, args): Case[] => {
    if (x.length * 4 > 64 * 1024 * 1024) return []; // ~0.2 GB/s: 256 MiB would take seconds per call
    const out = new Uint8Array(naiveQsgdMaxBytes(x.length));
    const len = naiveQsgdCompress(x, out, 1);
    const dec = new Float32Array(x.length);
    naiveQsgdDecompress(out.subarray(0, len), dec);
    let seed = 1;
    return [{
      name: 'naive-ts-qsgd compress t1', codec: 'naive-ts-qsgd', op: 'naive-ts-compress', threads: 1,
      compressionRatio: (4 * x.length) / len, relError: relError(x, dec),
      fn: () => naiveQsgdCompress(x, out, seed++),
    }];
  },
};
