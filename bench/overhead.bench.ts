// Per-call overhead of the TypeScript + N-API layer, and event-loop delay while compressAsync runs.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { gaussianData, gz, MiB, type Args } from './common';

export interface OverheadResult {
  perCall: Array<{ what: string; n: number; calls: number; medianUs: number; p10Us: number; p90Us: number }>;
  eventLoop: {
    bytes: number; calls: number; codec: string;
    asyncMsPerCall: number; syncMsPerCall: number;
    p50Ms: number; p99Ms: number; maxMs: number; intervalTicks: number; expectedTicks: number;
    idleP99Ms: number;
  };
}

function timeCalls(fn: () => unknown, calls: number): number[] {
  for (let i = 0; i < Math.min(2000, calls); i++) fn(); // warm up (JIT, params handle, pool)
  const t = new Float64Array(calls);
  for (let i = 0; i < calls; i++) {
    const a = process.hrtime.bigint();
    fn();
    t[i] = Number(process.hrtime.bigint() - a) / 1e3;
  }
  return Array.from(t).sort((x, y) => x - y);
}
const q = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];

export async function runOverhead(args: Args): Promise<OverheadResult> {
  const calls = args.quick ? 5000 : 50000;
  const n = 1000;
  const x = gaussianData(n, 7);
  const perCall: OverheadResult['perCall'] = [];
  const qs = gz.qsgd(); // defaults: s = 4, bucket 512, l2, fixed
  const pkt = qs.compress(x, { seed: 1 });
  const out = new Float32Array(n);
  const buf = new Uint8Array(qs.maxCompressedBytes(n));
  const tk = gz.topk({ ratio: 0.01 });
  const cases: Array<[string, () => unknown]> = [
    ['qsgd.compress(1000 floats) -> new packet', () => qs.compress(x, { seed: 1 })],
    ['qsgd.compress(1000 floats, { out })', () => qs.compress(x, { seed: 1, out: buf })],
    ['decompress(qsgd packet, out)', () => gz.decompress(pkt, out)],
    ['decompress(qsgd packet) -> new array', () => gz.decompress(pkt)],
    ['decompressAdd(qsgd packet, acc)', () => gz.decompressAdd(pkt, out, 0.5)],
    ['topk.compress(1000 floats)', () => tk.compress(x)],
    ['inspect(qsgd packet)', () => gz.inspect(pkt)],
    ['baseline: Float32Array(1000).set (memcpy)', () => out.set(x)],
  ];
  console.log(`\nper-call overhead (${calls} calls each, after warm-up; microseconds)`);
  for (const [what, fn] of cases) {
    const s = timeCalls(fn, calls);
    perCall.push({ what, n, calls, medianUs: q(s, 0.5), p10Us: q(s, 0.1), p90Us: q(s, 0.9) });
    console.log(`  ${what.padEnd(44)} median ${q(s, 0.5).toFixed(2).padStart(7)} us  (p10 ${q(s, 0.1).toFixed(2)}, p90 ${q(s, 0.9).toFixed(2)})`);
  }

  // Event-loop delay: idle baseline, then while compressAsync of a big tensor runs on the worker pool.
  const bytes = args.quick ? 64 * MiB : 256 * MiB;
  const big = gaussianData(bytes / 4, 8);
  const c = gz.qsgd({ levels: 4, bucketSize: 512 });
  const obuf = new Uint8Array(c.maxCompressedBytes(big.length));
  const reps = 3;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) c.compress(big, { seed: i + 1, out: obuf });
  const syncMs = Number(process.hrtime.bigint() - t0) / 1e6 / reps;

  const idle = monitorEventLoopDelay({ resolution: 1 });
  idle.enable();
  await new Promise((r) => setTimeout(r, 300));
  idle.disable();

  const h = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const iv = setInterval(() => { ticks++; }, 1);
  h.enable();
  t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) await c.compressAsync(big, { seed: i + 1, out: obuf });
  const asyncTotalMs = Number(process.hrtime.bigint() - t0) / 1e6;
  h.disable();
  clearInterval(iv);
  const eventLoop = {
    bytes, calls: reps, codec: 'qsgd s=4 b=512 fixed',
    asyncMsPerCall: asyncTotalMs / reps, syncMsPerCall: syncMs,
    p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6,
    intervalTicks: ticks, expectedTicks: Math.floor(asyncTotalMs),
    idleP99Ms: idle.percentile(99) / 1e6,
  };
  console.log(`\nevent-loop delay during compressAsync of ${bytes / MiB} MiB (x${reps}, ${eventLoop.asyncMsPerCall.toFixed(1)} ms each; sync compress ${syncMs.toFixed(1)} ms would block the loop that long):`);
  console.log(`  p50 ${eventLoop.p50Ms.toFixed(2)} ms, p99 ${eventLoop.p99Ms.toFixed(2)} ms, max ${eventLoop.maxMs.toFixed(2)} ms; idle p99 ${eventLoop.idleP99Ms.toFixed(2)} ms; a 1 ms interval fired ${ticks} times in ${asyncTotalMs.toFixed(0)} ms`);
  return { perCall, eventLoop };
}
