// TinyScript non-uniform quantization: 8 levels, bucket 512, Weibull shape fitted from the data (the fit is part
// of every compress call), and with a given shape (no fit).
import { gz, type Kernel } from './common';

export const kernel: Kernel = {
  name: 'nonuniform',
  configs: [
    { codec: 'nonuniform-fit', make: (threads: number) => gz.nonuniform({ levels: 8, bucketSize: 512, threads }) },
    { codec: 'nonuniform-k0.8', make: (threads: number) => gz.nonuniform({ levels: 8, bucketSize: 512, shape: 0.8, threads }) },
  ],
};
