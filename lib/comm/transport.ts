// The interface between the collective algorithms (group.ts) and a transport (inprocess.ts, mpi.ts).

/** One exchange step: every rank of the group calls `exchange` in the same order (SPMD). */
export interface ExchangeSpec {
  /** the operation's tag (op kind and size): ranks that disagree get ERR_GRADZIP_INVALID_ARG */
  tag: number;
  /** capacity needed for this rank's packet (bytes); 0 when it sends nothing */
  maxBytes: number;
  /** writes this rank's packet into `out` (at least maxBytes long, shared or registered memory: no
   *  copy afterwards) and returns its length; null when this rank sends nothing in this step */
  write: ((out: Uint8Array) => number) | null;
  /** ranks that read this rank's packet (MPI sends to them; shared memory needs no list) */
  to: number[];
  /** ranks whose packets this rank reads */
  from: number[];
  /** capacity for rank r's packet (MPI receive buffers) */
  maxRecv: (r: number) => number;
  /** every rank sends to every rank (an all-gather: MPI uses MPI_Iallgatherv) */
  all?: boolean;
}

export interface Transport {
  readonly kind: 'inprocess' | 'mpi';
  readonly rank: number;
  readonly size: number;
  bytesSent: number;
  bytesReceived: number;
  /** Publishes this rank's packet and gathers those of `from`. Resolves an array indexed by rank: the
   *  packets read, plus this rank's own packet at [rank] (as published). The views stay valid until
   *  `release()`. `deadline` is a Date.now() value (Infinity = none). */
  exchange(spec: ExchangeSpec, deadline: number, what: string): Promise<Array<Uint8Array | undefined>>;
  /** Marks the views of the last exchange as consumed. */
  release(): void;
  /** In-place float32 sum over ranks; bit-identical on every rank. */
  allreduceSum(x: Float32Array, deadline: number, what: string): Promise<void>;
  /** Copies root's bytes into every rank's `bytes` (same length everywhere). */
  broadcast(bytes: Uint8Array, root: number, deadline: number, what: string): Promise<void>;
  barrier(deadline: number, what: string): Promise<void>;
  close(): Promise<void>;
}
