// gradzip: gradient compression for distributed training. Public API (see docs/API.md).
export {
  qsgd, terngrad, onebit, topk, randomk, nonuniform,
  decompress, decompressAdd, decompressAsync, decompressAddAsync, setThreads,
} from './codecs';
export type {
  CodecName, CommonOptions, QsgdOptions, TerngradOptions, OnebitOptions, TopkOptions, RandomkOptions, NonuniformOptions,
  CompressOptions, Compressor, DecompressOptions,
} from './codecs';
export { errorFeedback } from './feedback';
export type { ErrorFeedback, ErrorFeedbackOptions } from './feedback';
export { inspect } from './packet';
export type { PacketInfo, PacketParams } from './packet';
export { info } from './info';
export type { Info, CudaInfo } from './info';
export { GradzipError } from './errors';
export type { GradzipErrorCode } from './errors';
export * as comm from './comm';
// DaQuSGD: DataQ, GradCorrQ and the loss-threshold sample selector (lib/train/daqu.ts).
export { dataq, dataqBitBound, gradCorrQ, gradCorrQDecode, gradCorrIndex, gradCorrBound, LossThresholdSelector } from './train/daqu';
export type { DataQ, DataQOptions, DataQBatch, DataQScale, DataQRounding, GradCorrQOptions, GradCorrQMessage } from './train/daqu';
