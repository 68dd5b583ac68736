// Collectives: Group over the in-process (worker_threads + SharedArrayBuffer) and MPI transports; NcclGroup (device arrays) over NCCL.
export { Group } from './group';
export type { AllreduceOptions, GossipOptions, GroupStats, CompressorLike, ErrorFeedbackOptions } from './group';
export { runInProcess } from './inprocess';
export type { InProcessOptions } from './inprocess';
export { mpi, mpiAvailable } from './mpi';
export type { MpiOptions } from './mpi';
export { ringMatrix, torusMatrix, torusShape, validateMixingMatrix, mixingMatrix, symmetricEigenvalues } from './topology';
export type { Topology, MixingInfo } from './topology';
export { deriveSeed } from './util';
export { planFusion } from './fusion';
export type { Transport, ExchangeSpec } from './transport';
export { quantizedPRSGD, dQuantizedPRSGD } from '../train';
export type { GradFn, RoundInfo, PRSGDOptions, DPRSGDOptions } from '../train';
export { nccl, ncclUniqueId, ncclInfo, NcclGroup } from './nccl';
export type { NcclOptions, NcclInfo, NcclAllreduceOptions } from './nccl';
