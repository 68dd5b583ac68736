// MPI transport: the optional addon build/Release/gradzip_mpi.node (scripts/build-mpi.sh), started by
// mpirun. A communication thread inside the addon owns MPI (MPI_Init_thread with MPI_THREAD_MULTIPLE
// requested, MPI_ERRORS_RETURN, non-blocking calls polled against the deadline), so JavaScript never blocks.
//
// What MPI can and cannot detect (docs/COLLECTIVES.md): a rank that exits or crashes usually makes
// mpirun (ORTE) abort the whole job (the survivors are killed: nothing hangs, but nothing rejects either);
// a rank that stalls is invisible to MPI: our deadline turns it into ERR_GRADZIP_TIMEOUT; MPI errors that
// MPI does return (MPI_ERRORS_RETURN) reject with ERR_GRADZIP_PEER_LOST. After a timeout or an MPI error
// the transport is unusable (requests in flight cannot be cancelled): later operations reject at once.
import * as fs from 'fs';
import * as path from 'path';
import { convert } from '../errors';
import { Group } from './group';
import type { ExchangeSpec, Transport } from './transport';
import { checkTimeout, commError } from './util';

interface MpiBinding {
  init(): Promise<{ rank: number; size: number; provided: number; threadMultiple: boolean; library: string }>;
  finalize(): Promise<void>;
  allreduceF32(x: Float32Array, timeoutMs: number): Promise<void>;
  bcast(x: Uint8Array, root: number, timeoutMs: number): Promise<void>;
  barrier(timeoutMs: number): Promise<void>;
  allgatherv(x: Uint8Array, len: number, timeoutMs: number): Promise<{ data: Uint8Array; counts: number[] }>;
  exchange(x: Uint8Array, len: number, to: number[], from: number[], caps: number[], tag: number, timeoutMs: number): Promise<Uint8Array[]>;
}

export interface MpiOptions {
  /** per-operation timeout in ms (0 or absent: none) */
  timeoutMs?: number;
  /** explicit path of gradzip_mpi.node */
  addonPath?: string;
}

function candidates(explicit?: string): string[] {
  const root = path.join(__dirname, '..', '..', '..');
  const c = [
    process.env.GRADZIP_MPI_ADDON,
    path.join(root, 'build', 'Release', 'gradzip_mpi.node'),
    path.join(root, 'build', 'Debug', 'gradzip_mpi.node'),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'gradzip_mpi.node'),
  ];
  return [explicit, ...c].filter((p): p is string => typeof p === 'string' && p.length > 0);
}

let binding: MpiBinding | null = null;
function load(explicit?: string): MpiBinding {
  if (binding) return binding;
  const tried: string[] = [];
  for (const p of candidates(explicit)) {
    tried.push(p);
    if (!fs.existsSync(p)) continue;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    binding = require(p) as MpiBinding;
    return binding;
  }
  throw commError('ERR_GRADZIP_INVALID_ARG',
    `comm.mpi(): the MPI transport is not built (looked for ${tried.join(', ')}). Install MPI (scripts/install-mpi.sh) and run scripts/build-mpi.sh, then start the program with mpirun.`);
}

/** Whether the MPI addon is built here (it still needs mpirun, or a singleton MPI start, to run). */
export function mpiAvailable(): boolean {
  return candidates().some((p) => fs.existsSync(p));
}

function wrap<T>(p: Promise<T>): Promise<T> {
  return p.catch((e) => {
    throw convert(e);
  });
}

class MpiTransport implements Transport {
  readonly kind = 'mpi' as const;
  bytesSent = 0;
  bytesReceived = 0;
  private send = new Uint8Array(0);
  private tag = 0;
  private closed = false;
  constructor(private b: MpiBinding, readonly rank: number, readonly size: number) {}

  private ms(deadline: number): number {
    if (deadline === Infinity) return 0;
    return Math.max(1, deadline - Date.now());
  }

  async exchange(spec: ExchangeSpec, deadline: number): Promise<Array<Uint8Array | undefined>> {
    const out: Array<Uint8Array | undefined> = new Array(this.size).fill(undefined);
    if (this.send.length < spec.maxBytes) this.send = new Uint8Array(Math.max(spec.maxBytes, Math.ceil(this.send.length * 1.5)));
    let len = 0;
    if (spec.write) {
      len = spec.write(this.send.subarray(0, spec.maxBytes));
      out[this.rank] = this.send.subarray(0, len);
    }
    if (this.size === 1) return out;
    if (spec.all) {
      const r = await wrap(this.b.allgatherv(this.send, len, this.ms(deadline)));
      let off = 0;
      for (let j = 0; j < this.size; j++) {
        const c = r.counts[j];
        if (j !== this.rank) {
          out[j] = r.data.subarray(off, off + c);
          this.bytesReceived += c;
        }
        off += c;
      }
      this.bytesSent += len;
      return out;
    }
    this.tag = (this.tag + 1) % 30000;
    const from = spec.from.filter((j) => j !== this.rank);
    const to = spec.write ? spec.to.filter((j) => j !== this.rank) : [];
    const got = await wrap(this.b.exchange(this.send, len, to, from, from.map((j) => spec.maxRecv(j)), this.tag + 1, this.ms(deadline)));
    from.forEach((j, k) => {
      out[j] = got[k];
      this.bytesReceived += got[k].length;
    });
    if (to.length) this.bytesSent += len;
    return out;
  }

  release(): void {}

  async allreduceSum(x: Float32Array, deadline: number): Promise<void> {
    if (this.size === 1) return;
    await wrap(this.b.allreduceF32(x, this.ms(deadline)));
    this.bytesSent += x.byteLength;
    this.bytesReceived += x.byteLength;
  }

  async broadcast(bytes: Uint8Array, root: number, deadline: number): Promise<void> {
    if (this.size === 1) return;
    await wrap(this.b.bcast(bytes, root, this.ms(deadline)));
    if (this.rank === root) this.bytesSent += bytes.length;
    else this.bytesReceived += bytes.length;
  }

  async barrier(deadline: number): Promise<void> {
    if (this.size === 1) return;
    await wrap(this.b.barrier(this.ms(deadline)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await wrap(this.b.finalize());
  }
}

let the: Promise<Group> | null = null;

/** The MPI group of this process (MPI_COMM_WORLD, duplicated). One per process; close() finalizes MPI. */
export function mpi(opts: MpiOptions = {}): Promise<Group> {
  if (the) return the;
  the = (async () => {
    const timeoutMs = checkTimeout(opts?.timeoutMs, 'comm.mpi');
    const b = load(opts?.addonPath);
    const r = await wrap(b.init());
    const g = new Group(new MpiTransport(b, r.rank, r.size), { timeoutMs });
    (g as Group & { mpiInfo?: unknown }).mpiInfo = { provided: r.provided, threadMultiple: r.threadMultiple, library: r.library };
    return g;
  })();
  the.catch(() => {
    the = null;
  });
  return the;
}
