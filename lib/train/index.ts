// Training loops over a comm Group: Quantized-PR-SGD (all-reduce) and D-Quantized-PR-SGD (gossip).
export { quantizedPRSGD, dQuantizedPRSGD } from './prsgd';
export type { GradFn, RoundInfo, PRSGDOptions, DPRSGDOptions } from './prsgd';
