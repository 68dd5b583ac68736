// In-process transport: `size` worker_threads sharing SharedArrayBuffers.
//
// Shared state (docs/COLLECTIVES.md has the full description):
// - one control SharedArrayBuffer (Int32 words, plus Float64 packet lengths) created by the main thread:
//   ABORT, FAILED_RANK, and per rank: POSTED (last step published), DONE (last step fully read),
//   GEN[2] (generation of the rank's slot buffer for each parity), TAG[2] (operation tag), FIN.
// - per rank two slot SharedArrayBuffers (parity = step & 1), owned (written) only by that rank. A rank
//   compresses straight into its slot (compress(x, { out: slotView })): readers decode from the same
//   memory; there is no copy. A slot that is too small is replaced by a larger one (generation + 1); the
//   new buffer reaches the other workers through the main thread.
// Every collective is a sequence of steps that all ranks run in the same order. In step s rank r waits
// until every rank has DONE >= s - 2 (nobody still reads r's slot of the same parity), writes its packet,
// stores POSTED = s (Atomics.store, then notify), waits for POSTED >= s of the ranks it reads, reads
// their slots, and stores DONE = s. Waits use Atomics.waitAsync, so a worker's event loop keeps running.
// A worker that throws, exits or crashes makes the main thread set ABORT and notify every word: every
// pending wait rejects with ERR_GRADZIP_PEER_LOST at once. A wait longer than the deadline rejects with
// ERR_GRADZIP_TIMEOUT.
import * as path from 'path';
import { pathToFileURL } from 'url';
import { Worker } from 'worker_threads';
import type { ExchangeSpec, Transport } from './transport';
import { checkTimeout, commError } from './util';

// ---- control layout
const ABORT = 0, FAILED_RANK = 1;
const HDR = 8, PER = 8;
const POSTED = 0, DONE = 1, GEN0 = 2, TAG0 = 4, FIN = 6;
function ctlWords(size: number) {
  return HDR + PER * size;
}
function lensOffset(size: number) {
  return Math.ceil((ctlWords(size) * 4) / 8) * 8;
}
function ctlBytes(size: number) {
  return lensOffset(size) + size * 2 * 8;
}

const INITIAL_SLOT = 256 * 1024;

export interface InProcessOptions {
  size: number;
  module: string | URL;
  args?: unknown;
  /** per-operation timeout in ms (0 or absent: none) */
  timeoutMs?: number;
  /** initial capacity of each shared slot (grows on demand) */
  slotBytes?: number;
}

export interface WorkerInit {
  rank: number;
  size: number;
  ctl: SharedArrayBuffer;
  slots: SharedArrayBuffer[][];
  moduleUrl: string;
  args: unknown;
  timeoutMs: number;
}

interface Outcome {
  rank: number;
  status: 'fulfilled' | 'rejected';
  value?: unknown;
  reason?: unknown;
}

function reviveError(e: { name?: string; message?: string; stack?: string; code?: string } | undefined, rank: number): Error {
  const msg = e?.message ?? 'unknown error';
  const err = e?.code ? commError(e.code, msg) : new Error(msg);
  if (e?.name && !e.code) err.name = e.name;
  if (e?.stack) err.stack = e.stack;
  (err as Error & { rank?: number }).rank = rank;
  return err;
}

/** Runs `size` workers; each imports `module` (path or URL, ESM or CommonJS) and calls its default
 *  export fn(group, args). Resolves the return values in rank order. */
export function runInProcess<T = unknown>(opts: InProcessOptions): Promise<T[]> {
  return new Promise<T[]>((resolve, reject) => {
    let size: number, moduleUrl: string, timeoutMs: number;
    try {
      if (!opts || typeof opts !== 'object') throw commError('ERR_GRADZIP_INVALID_ARG', 'runInProcess: options object required');
      size = opts.size;
      if (!Number.isInteger(size) || size < 1 || size > 1024) throw commError('ERR_GRADZIP_INVALID_ARG', 'runInProcess: size must be an integer in [1, 1024]');
      const m = opts.module;
      if (m instanceof URL) moduleUrl = m.href;
      else if (typeof m === 'string' && m.length > 0) moduleUrl = /^(file|data):/.test(m) ? m : pathToFileURL(path.resolve(m)).href;
      else throw commError('ERR_GRADZIP_INVALID_ARG', 'runInProcess: module must be a path or a URL');
      timeoutMs = checkTimeout(opts.timeoutMs, 'runInProcess');
    } catch (e) {
      reject(e);
      return;
    }
    const slotBytes = Math.max(64, Math.ceil((opts.slotBytes ?? INITIAL_SLOT) / 64) * 64);
    const ctl = new SharedArrayBuffer(ctlBytes(size));
    const ctlI = new Int32Array(ctl);
    Atomics.store(ctlI, FAILED_RANK, -1);
    const slots: SharedArrayBuffer[][] = [];
    for (let r = 0; r < size; r++) slots.push([new SharedArrayBuffer(slotBytes), new SharedArrayBuffer(slotBytes)]);

    const workers: Worker[] = [];
    const outcomes: (Outcome | undefined)[] = new Array(size).fill(undefined);
    const exited: boolean[] = new Array(size).fill(false);
    let firstFailure: { rank: number; error: Error } | null = null;
    let graceTimer: NodeJS.Timeout | null = null;
    let settled = false;

    const abortAll = (rank: number) => {
      if (Atomics.compareExchange(ctlI, ABORT, 0, 1) === 0) Atomics.store(ctlI, FAILED_RANK, rank);
      for (let i = 0; i < ctlWords(size); i++) Atomics.notify(ctlI, i);
      for (let r = 0; r < size; r++) if (!exited[r]) workers[r]?.postMessage({ type: 'abort', rank });
    };

    const finish = () => {
      if (settled) return;
      if (!exited.every(Boolean)) return;
      settled = true;
      if (graceTimer) clearTimeout(graceTimer);
      if (!firstFailure) {
        resolve(outcomes.map((o) => o!.value) as T[]);
        return;
      }
      const f = firstFailure;
      const code = (f.error as { code?: string }).code;
      const passCode = code === 'ERR_GRADZIP_TIMEOUT' || code === 'ERR_GRADZIP_PEER_LOST' ? code : 'ERR_GRADZIP_PEER_LOST';
      const err = commError(passCode, `runInProcess: rank ${f.rank} failed: ${f.error.message}`, f.error) as Error & {
        rank?: number; outcomes?: Outcome[];
      };
      err.rank = f.rank;
      err.outcomes = outcomes.map((o, r) => o ?? { rank: r, status: 'rejected', reason: commError('ERR_GRADZIP_PEER_LOST', `rank ${r} was terminated`) });
      reject(err);
    };

    const fail = (rank: number, error: Error) => {
      if (!outcomes[rank]) outcomes[rank] = { rank, status: 'rejected', reason: error };
      if (!firstFailure) {
        firstFailure = { rank, error };
        abortAll(rank);
        // Ranks that do not notice (busy, or never calling another collective) are stopped after a grace.
        const grace = timeoutMs > 0 ? timeoutMs : 5000;
        graceTimer = setTimeout(() => {
          for (let r = 0; r < size; r++) if (!exited[r]) void workers[r].terminate();
        }, grace);
        graceTimer.unref?.();
      }
    };

    const entry = path.join(__dirname, 'worker-entry.js');
    for (let rank = 0; rank < size; rank++) {
      const init: WorkerInit = { rank, size, ctl, slots, moduleUrl: moduleUrl!, args: opts.args, timeoutMs: timeoutMs! };
      let w: Worker;
      try {
        w = new Worker(entry, { workerData: init });
      } catch (e) {
        for (const x of workers) void x.terminate();
        reject(commError('ERR_GRADZIP_INVALID_ARG', `runInProcess: could not start worker ${rank}: ${(e as Error).message}`, e));
        return;
      }
      workers.push(w);
      w.on('message', (m: { type: string; [k: string]: unknown }) => {
        if (m.type === 'slot') {
          for (let r = 0; r < size; r++) if (r !== rank && !exited[r]) workers[r].postMessage(m);
        } else if (m.type === 'result') {
          outcomes[rank] = { rank, status: 'fulfilled', value: m.value };
          // The worker exits by itself (so its console output is flushed); one that keeps handles open
          // (timers, sockets) is stopped after a second.
          setTimeout(() => void w.terminate(), 1000).unref();
        } else if (m.type === 'error') {
          fail(rank, reviveError(m.error as never, rank));
          setTimeout(() => void w.terminate(), 1000).unref();
        }
      });
      w.on('error', (e) => fail(rank, e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => {
        exited[rank] = true;
        Atomics.store(ctlI, HDR + PER * rank + FIN, 1);
        Atomics.notify(ctlI, HDR + PER * rank + POSTED);
        if (!outcomes[rank]) fail(rank, new Error(`worker exited with code ${code} before returning`));
        else if (outcomes[rank]!.status === 'rejected' && !firstFailure) fail(rank, outcomes[rank]!.reason as Error);
        finish();
      });
    }
  });
}

type Waiter = { resolve: () => void; reject: (e: Error) => void };

/** The worker side: one per worker thread. */
export class InProcessTransport implements Transport {
  readonly kind = 'inprocess' as const;
  readonly rank: number;
  readonly size: number;
  bytesSent = 0;
  bytesReceived = 0;
  private ctl: Int32Array;
  private lens: Float64Array;
  private slots: SharedArrayBuffer[][];
  private gens: number[][];
  private extra = new Map<string, SharedArrayBuffer>(); // `${rank}:${parity}:${gen}` announced slots
  private waiters = new Map<string, Waiter[]>();
  private step = 0;
  private pendingDone = 0;
  private abortedBy = -1;
  private post: (m: unknown) => void;

  constructor(init: WorkerInit, post: (m: unknown) => void) {
    this.rank = init.rank;
    this.size = init.size;
    this.ctl = new Int32Array(init.ctl, 0, ctlWords(init.size));
    this.lens = new Float64Array(init.ctl, lensOffset(init.size), init.size * 2);
    this.slots = init.slots.map((p) => p.slice());
    this.gens = init.slots.map(() => [0, 0]);
    this.post = post;
  }

  private w(r: number, f: number) {
    return HDR + PER * r + f;
  }

  /** Messages from the main thread: announced slots and aborts. */
  onMessage(m: { type: string; rank: number; parity?: number; gen?: number; sab?: SharedArrayBuffer }) {
    if (m.type === 'slot') {
      const key = `${m.rank}:${m.parity}:${m.gen}`;
      this.extra.set(key, m.sab!);
      const ws = this.waiters.get(key);
      if (ws) {
        this.waiters.delete(key);
        for (const x of ws) x.resolve();
      }
    } else if (m.type === 'abort') {
      this.abortedBy = m.rank;
      for (const [, ws] of this.waiters) for (const x of ws) x.reject(this.peerLost(m.rank, 'an operation'));
      this.waiters.clear();
    }
  }

  private peerLost(r: number, what: string): Error {
    return commError('ERR_GRADZIP_PEER_LOST', `${what}: rank ${r} failed or exited (rank ${this.rank} gives up)`);
  }

  private checkAbort(what: string) {
    if (Atomics.load(this.ctl, ABORT) !== 0 || this.abortedBy >= 0) {
      const r = Atomics.load(this.ctl, FAILED_RANK);
      throw this.peerLost(r >= 0 ? r : this.abortedBy, what);
    }
  }

  /** Waits until ctl[idx] >= target. `peer` is the rank that must move; deadline is Date.now()-based. */
  private async waitGE(idx: number, target: number, peer: number, deadline: number, what: string): Promise<void> {
    const ctl = this.ctl;
    let spinStart = 0;
    for (let spin = 0; ; spin++) {
      const v = Atomics.load(ctl, idx);
      if (v >= target) return;
      this.checkAbort(what);
      if (Atomics.load(ctl, this.w(peer, FIN)) !== 0 && Atomics.load(ctl, idx) < target) {
        throw commError('ERR_GRADZIP_PEER_LOST', `${what}: rank ${peer} has finished (returned or exited) while rank ${this.rank} waits for it`);
      }
      // a short spin (up to ~40 us) catches the common case of a peer a few microseconds behind without
      // paying the wake-up latency of waitAsync (a task posted to this worker's event loop)
      if (spin < 8) continue;
      if (spin < 400) {
        if (spinStart === 0) spinStart = performance.now();
        if (performance.now() - spinStart < 0.04) continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw commError('ERR_GRADZIP_TIMEOUT', `${what}: rank ${this.rank} timed out waiting for rank ${peer}`);
      }
      const res = (Atomics as unknown as {
        waitAsync(a: Int32Array, i: number, v: number, t?: number): { async: boolean; value: Promise<string> | string };
      }).waitAsync(ctl, idx, v, left === Infinity ? undefined : Math.min(left, 2 ** 31 - 1));
      if (res.async) await res.value;
    }
  }

  private async slotOf(j: number, par: number, gen: number, deadline: number, what: string): Promise<SharedArrayBuffer> {
    if (this.gens[j][par] === gen) return this.slots[j][par];
    const key = `${j}:${par}:${gen}`;
    let sab = this.extra.get(key);
    if (!sab) {
      this.checkAbort(what);
      await new Promise<void>((resolve, reject) => {
        const left = deadline - Date.now();
        let timer: NodeJS.Timeout | undefined;
        const wt: Waiter = {
          resolve: () => { if (timer) clearTimeout(timer); resolve(); },
          reject: (e) => { if (timer) clearTimeout(timer); reject(e); },
        };
        if (left !== Infinity) {
          timer = setTimeout(() => {
            const ws = this.waiters.get(key);
            if (ws) ws.splice(ws.indexOf(wt), 1);
            reject(commError('ERR_GRADZIP_TIMEOUT', `${what}: rank ${this.rank} timed out waiting for rank ${j}'s buffer`));
          }, Math.max(0, left));
        }
        const ws = this.waiters.get(key) ?? [];
        ws.push(wt);
        this.waiters.set(key, ws);
      });
      sab = this.extra.get(key)!;
    }
    this.extra.delete(key);
    this.slots[j][par] = sab;
    this.gens[j][par] = gen;
    return sab;
  }

  private ensureSlot(par: number, need: number): SharedArrayBuffer {
    const cur = this.slots[this.rank][par];
    if (cur.byteLength >= need) return cur;
    const cap = Math.ceil(Math.max(need, cur.byteLength * 1.5) / 65536) * 65536;
    const sab = new SharedArrayBuffer(cap);
    const gen = this.gens[this.rank][par] + 1;
    this.gens[this.rank][par] = gen;
    this.slots[this.rank][par] = sab;
    Atomics.store(this.ctl, this.w(this.rank, GEN0 + par), gen);
    this.post({ type: 'slot', rank: this.rank, parity: par, gen, sab });
    return sab;
  }

  release(): void {
    if (this.pendingDone) {
      Atomics.store(this.ctl, this.w(this.rank, DONE), this.pendingDone);
      Atomics.notify(this.ctl, this.w(this.rank, DONE));
      this.pendingDone = 0;
    }
  }

  /** Publishes (optionally) and reads; see the file comment for the protocol. */
  async exchange(spec: ExchangeSpec, deadline: number, what: string): Promise<Array<Uint8Array | undefined>> {
    this.release();
    this.checkAbort(what);
    const s = ++this.step, par = s & 1, me = this.rank;
    const out: Array<Uint8Array | undefined> = new Array(this.size).fill(undefined);
    // nobody may still read this rank's parity-`par` slot, length or tag (step s - 2)
    if (s > 2) for (let j = 0; j < this.size; j++) if (j !== me) await this.waitGE(this.w(j, DONE), s - 2, j, deadline, what);
    if (spec.write) {
      const sab = this.ensureSlot(par, spec.maxBytes);
      const len = spec.write(new Uint8Array(sab, 0, spec.maxBytes));
      if (!(len >= 0 && len <= spec.maxBytes)) throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: packet length ${len} exceeds the slot`);
      this.lens[me * 2 + par] = len;
      out[me] = new Uint8Array(sab, 0, len);
      if (len > 0 && this.size > 1) this.bytesSent += len;
    } else {
      this.lens[me * 2 + par] = 0;
    }
    Atomics.store(this.ctl, this.w(me, TAG0 + par), spec.tag);
    Atomics.store(this.ctl, this.w(me, POSTED), s);
    Atomics.notify(this.ctl, this.w(me, POSTED));
    this.pendingDone = s;
    for (const j of spec.from) {
      if (j === me) continue;
      await this.waitGE(this.w(j, POSTED), s, j, deadline, what);
      const tag = Atomics.load(this.ctl, this.w(j, TAG0 + par));
      if (tag !== spec.tag) {
        throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: rank ${j} called a different operation or size than rank ${me} (collectives must match on every rank)`);
      }
      const gen = Atomics.load(this.ctl, this.w(j, GEN0 + par));
      const sab = await this.slotOf(j, par, gen, deadline, what);
      const len = this.lens[j * 2 + par];
      if (!(len >= 0 && len <= sab.byteLength)) throw commError('ERR_GRADZIP_CORRUPT', `${what}: rank ${j} published a bad length`);
      out[j] = new Uint8Array(sab, 0, len);
      this.bytesReceived += len;
    }
    return out;
  }

  private async plainStep(spec: ExchangeSpec, deadline: number, what: string) {
    return this.exchange(spec, deadline, what);
  }

  async allreduceSum(x: Float32Array, deadline: number, what: string): Promise<void> {
    const P = this.size, me = this.rank, n = x.length;
    if (P === 1) return;
    const off: number[] = [];
    for (let k = 0; k <= P; k++) off.push(Math.floor((k * n) / P));
    const all: number[] = [];
    for (let j = 0; j < P; j++) if (j !== me) all.push(j);
    // step A: publish the whole tensor; the owner of chunk `me` sums it over ranks in order 0 .. P-1
    const a = await this.plainStep({
      tag: (0x5a5a0000 ^ n) | 0, maxBytes: 4 * n, all: true,
      write: (out) => {
        new Uint8Array(out.buffer, out.byteOffset, 4 * n).set(new Uint8Array(x.buffer, x.byteOffset, 4 * n));
        return 4 * n;
      },
      to: all, from: all, maxRecv: () => 4 * n,
    }, deadline, what);
    // the bytes counted as received: only the chunk this rank reads from each peer
    this.bytesReceived -= (P - 1) * 4 * n - (P - 1) * 4 * (off[me + 1] - off[me]);
    const lo = off[me], hi = off[me + 1], m = hi - lo;
    const sum = new Float32Array(m);
    sum.set(new Float32Array(a[0]!.buffer, a[0]!.byteOffset + 4 * lo, m));
    for (let j = 1; j < P; j++) {
      const v = new Float32Array(a[j]!.buffer, a[j]!.byteOffset + 4 * lo, m);
      for (let i = 0; i < m; i++) sum[i] += v[i];
    }
    this.release();
    // step B: publish the reduced chunk; everyone copies every chunk
    const b = await this.plainStep({
      tag: (0x5b5b0000 ^ n) | 0, maxBytes: 4 * m, all: true,
      write: (out) => {
        new Uint8Array(out.buffer, out.byteOffset, 4 * m).set(new Uint8Array(sum.buffer, 0, 4 * m));
        return 4 * m;
      },
      to: all, from: all, maxRecv: (j) => 4 * (off[j + 1] - off[j]),
    }, deadline, what);
    for (let j = 0; j < P; j++) {
      const mj = off[j + 1] - off[j];
      x.set(new Float32Array(b[j]!.buffer, b[j]!.byteOffset, mj), off[j]);
    }
    this.release();
  }

  async broadcast(bytes: Uint8Array, root: number, deadline: number, what: string): Promise<void> {
    if (this.size === 1) return;
    const me = this.rank, n = bytes.length;
    const others: number[] = [];
    for (let j = 0; j < this.size; j++) if (j !== root) others.push(j);
    const v = await this.exchange({
      tag: (0x6b000000 ^ (n % 0xffffff) ^ (root << 24)) | 0, maxBytes: me === root ? n : 0,
      write: me === root ? (out) => { out.set(bytes); return n; } : null,
      to: me === root ? others : [], from: me === root ? [] : [root], maxRecv: () => n,
    }, deadline, what);
    if (me !== root) {
      if (v[root]!.length !== n) {
        this.release();
        throw commError('ERR_GRADZIP_INVALID_ARG', `${what}: root has ${v[root]!.length} bytes, rank ${me} has ${n} (lengths must match)`);
      }
      bytes.set(v[root]!);
    }
    this.release();
  }

  async barrier(deadline: number, what: string): Promise<void> {
    if (this.size === 1) return;
    const all: number[] = [];
    for (let j = 0; j < this.size; j++) if (j !== this.rank) all.push(j);
    await this.exchange({ tag: 0x7ba77e17, maxBytes: 0, write: null, to: [], from: all, maxRecv: () => 0 }, deadline, what);
    this.release();
  }

  async close(): Promise<void> {
    this.release();
  }
}
