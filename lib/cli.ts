#!/usr/bin/env node
// gradzip command line: `demo` (codec table on a 4M-element Gaussian gradient, then the training demo),
// `inspect <file>` (header of a packet file), `hexdump [file]` (annotated bytes; without a file, the worked
// example of docs/FORMAT.md section 6), `info`.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import {
  decompress, inspect, info, nonuniform, onebit, qsgd, randomk, terngrad, topk, type Compressor,
} from './index';
import { parseRaw } from './packet';

// ---------------------------------------------------------------------------------------------------------
// Deterministic Gaussian data (xorshift128+ and Box-Muller) so the table is reproducible.
export function gaussian(n: number, seed = 1): Float32Array {
  const x = new Float32Array(n);
  let s0 = (0x9e3779b9 ^ seed) >>> 0, s1 = 0x243f6a88 >>> 0, s2 = 0xb7e15162 >>> 0, s3 = (0x85a308d3 + seed) >>> 0;
  const next = (): number => { // xoshiro128** -> [0, 1)
    const r = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 11);
    return r / 4294967296;
  };
  for (let i = 0; i < n; i += 2) {
    const u = 1 - next(), v = next();
    const r = Math.sqrt(-2 * Math.log(u)), a = 2 * Math.PI * v;
    x[i] = r * Math.cos(a);
    if (i + 1 < n) x[i + 1] = r * Math.sin(a);
  }
  return x;
}
function rotl(x: number, k: number): number { return ((x << k) | (x >>> (32 - k))) >>> 0; }

function relErr(x: Float32Array, y: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < x.length; i++) { const d = y[i] - x[i]; num += d * d; den += x[i] * x[i]; }
  return den === 0 ? 0 : Math.sqrt(num / den);
}

function best(reps: number, f: () => void): number {
  let b = Infinity;
  for (let r = 0; r < reps; r++) { const t = performance.now(); f(); b = Math.min(b, performance.now() - t); }
  return b;
}

export interface DemoRow { codec: string; bits: number; ratio: number; relErr: number; compressMs: number; decompressMs: number }

export function codecTable(n = 4 * 1024 * 1024, reps = 3): DemoRow[] {
  const x = gaussian(n, 1);
  const rows: Array<[string, Compressor]> = [
    ['qsgd', qsgd()],
    ['qsgd coding=gamma', qsgd({ coding: 'gamma' })],
    ['qsgd coding=sparse levels=16', qsgd({ coding: 'sparse', levels: 16 })],
    ['terngrad', terngrad()],
    ['onebit', onebit()],
    ['topk', topk()],
    ['randomk', randomk()],
    ['nonuniform', nonuniform()],
  ];
  const out = new Float32Array(n);
  const result: DemoRow[] = [];
  for (const [label, c] of rows) {
    let packet: Uint8Array = c.compress(x, { seed: 1 });
    const compressMs = best(reps, () => { packet = c.compress(x, { seed: 1 }); });
    const decompressMs = best(reps, () => { decompress(packet, out); });
    const bits = (packet.byteLength * 8) / n;
    result.push({ codec: label, bits, ratio: 32 / bits, relErr: relErr(x, out), compressMs, decompressMs });
  }
  return result;
}

export function formatTable(rows: DemoRow[]): string {
  const head = ['codec (default options)', 'bits/elem', 'vs fp32', 'rel. l2 error', 'compress ms', 'decompress ms'];
  const body = rows.map((r) => [r.codec, r.bits.toFixed(3), `${r.ratio.toFixed(1)}x`, r.relErr.toFixed(4),
    r.compressMs.toFixed(2), r.decompressMs.toFixed(2)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((k) => '-'.repeat(k)).join('  '), ...body.map(line)].join('\n');
}

async function demo(): Promise<void> {
  const i = info();
  const n = 4 * 1024 * 1024;
  console.log(`gradzip ${i.version}: ${i.cpu.simd} SIMD, ${i.threads} threads, CUDA ${i.backends.cuda.available ? 'available' : 'not available'}`);
  console.log(`Gradient: ${n.toLocaleString('en-US')} float32 values ~ N(0, 1) (${(n * 4 / 2 ** 20).toFixed(0)} MiB), seed 1, best of 3.\n`);
  console.log(formatTable(codecTable(n)));
  console.log('\nrandomk and topk keep 1% of the values (ratio 0.01); relative error is ||decode(encode(x)) - x|| / ||x||.');
  let runDemo: (() => Promise<void>) | undefined;
  try {
    runDemo = (require('./demo') as { runDemo?: () => Promise<void> }).runDemo;
  } catch (e) {
    const err = e as { code?: string; message?: string };
    if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes('./demo')) throw e;
  }
  if (typeof runDemo !== 'function') {
    console.log('\n(training demo: lib/demo.ts is not part of this build; skipped)');
    return;
  }
  console.log('');
  await runDemo();
}

// ---------------------------------------------------------------------------------------------------------
function jsonable(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x)));
}

function hex(b: Uint8Array, from: number, to: number): string {
  const parts: string[] = [];
  for (let i = from; i < to; i++) parts.push(b[i].toString(16).padStart(2, '0'));
  return parts.join(' ');
}

/** Annotated hex of a packet: one line per field, `offset  bytes  meaning`. */
export function hexdump(p: Uint8Array, input?: ArrayLike<number>): string {
  const h = parseRaw(p);
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const lines: string[] = [];
  const row = (off: number, len: number, what: string): void => {
    // wrap long byte runs at 16 bytes per line
    for (let o = off; o < off + len || (len === 0 && o === off); o += 16) {
      const e = Math.min(off + len, o + 16);
      lines.push(`${o.toString().padStart(5)}  ${hex(p, o, e).padEnd(47)}  ${o === off ? what : ''}`.trimEnd());
      if (len === 0) break;
    }
  };
  const codec = inspect(p).codec;
  row(0, 4, 'magic "GZPK"');
  row(4, 1, `version ${h.version}`);
  row(5, 1, `codec ${h.codec} (${codec})`);
  row(6, 1, `flags ${h.flags}${h.flags & 1 ? ' (seed drawn by gradzip)' : ' (seed given by the caller)'}`);
  row(7, 1, 'reserved');
  row(8, 8, `n = ${h.n}`);
  row(16, 8, `seed = ${h.seed}`);
  row(24, 4, `bucketSize = ${h.bucket}`);
  row(28, 4, `P = ${h.paramBytes} (parameter block bytes)`);
  row(32, 4, `C = ${h.chunkCount} (chunks)`);
  row(36, 4, `E = ${h.chunkElems} (elements per chunk)`);
  row(40, 8, `payloadBytes = ${h.payloadBytes}`);
  let off = 48;
  if (h.codec === 1) {
    row(off, 4, `levels s = ${h.levels}`);
    row(off + 4, 1, `norm ${h.norm} (${h.norm ? 'linf' : 'l2'})`);
    row(off + 5, 1, `coding ${h.coding} (${['fixed', 'gamma', 'sparse'][h.coding]})`);
    row(off + 6, 2, 'reserved');
  } else if (h.paramBytes > 0) {
    row(off, h.paramBytes, 'parameter block');
  }
  off += h.paramBytes;
  if (h.chunkCount > 0) { row(off, 4 * h.chunkCount, 'chunk table (u32 byte lengths)'); off += 4 * h.chunkCount; }
  const fixedQ = (h.codec === 1 && h.coding === 0) || h.codec === 2;
  if (fixedQ && h.n > 0) {
    const s = h.codec === 2 ? 1 : h.levels;
    const W = 1 + Math.ceil(Math.log2(s + 1));
    for (let b0 = 0; b0 < h.n; b0 += h.bucket) {
      const m = Math.min(h.bucket, h.n - b0);
      const N = dv.getFloat32(off, true);
      row(off, 4, `bucket ${b0 / h.bucket}: scale N = ${N} (f32)`);
      off += 4;
      const nb = Math.ceil((m * W) / 8);
      const w = Math.fround(N / s);
      row(off, nb, `${m} codes of ${W} bits (zeta << 1 | sign), LSB first; w = N / s = ${w}`);
      for (let i = 0; i < Math.min(m, 16); i++) {
        let c = 0;
        for (let k = 0; k < W; k++) { const q = i * W + k; c |= ((p[off + (q >> 3)] >> (q & 7)) & 1) << k; }
        const zeta = c >> 1, neg = c & 1;
        const v = Math.fround(w * zeta);
        const src = input && b0 + i < input.length ? `x[${b0 + i}] = ${input[b0 + i]}: ` : `x[${b0 + i}]: `;
        lines.push(`${''.padStart(5)}  ${''.padEnd(47)}    ${src}bits ${i * W}..${i * W + W - 1} = ${c.toString(2).padStart(W, '0')}b: zeta ${zeta}, sign ${neg} -> ${neg ? -v : v}`);
      }
      if (m > 16) lines.push(`${''.padStart(5)}  ${''.padEnd(47)}    ...`);
      off += nb;
    }
  } else if (h.payloadBytes > 0) {
    row(off, h.payloadBytes, 'payload');
    off += h.payloadBytes;
  }
  row(off, 4, `CRC32C = 0x${dv.getUint32(off, true).toString(16).padStart(8, '0')} (of bytes 0..${off - 1})`);
  return lines.join('\n');
}

/** The worked example of docs/FORMAT.md section 6. */
export const EXAMPLE_INPUT = [0.5, -1.25, 0, 2, -0.125];
export function examplePacket(): Uint8Array {
  return qsgd({ levels: 4 }).compress(new Float32Array(EXAMPLE_INPUT), { seed: 1 });
}

function usage(): void {
  console.log(`usage: gradzip <command>
  demo             codec table on a 4M-element Gaussian gradient, then the training demo
  inspect <file>   validate a packet file and print its header
  hexdump [file]   annotated bytes of a packet (default: the worked example of docs/FORMAT.md)
  info             version, CPU features, threads, backends`);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, arg] = argv;
  switch (cmd) {
    case 'demo':
      await demo();
      return 0;
    case 'inspect': {
      if (!arg) { usage(); return 2; }
      console.log(JSON.stringify(jsonable(inspect(new Uint8Array(readFileSync(arg)))), null, 2));
      return 0;
    }
    case 'hexdump': {
      if (arg) { console.log(hexdump(new Uint8Array(readFileSync(arg)))); return 0; }
      const p = examplePacket();
      console.log(`qsgd({ levels: 4 }).compress(new Float32Array([${EXAMPLE_INPUT.join(', ')}]), { seed: 1 }): ${p.byteLength} bytes`);
      console.log(hexdump(p, EXAMPLE_INPUT));
      console.log(`decompress: [${Array.from(decompress(p)).join(', ')}]`);
      return 0;
    }
    case 'info':
      console.log(JSON.stringify(jsonable(info()), null, 2));
      return 0;
    default:
      usage();
      return cmd === undefined || cmd === 'help' || cmd === '--help' ? 0 : 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
    console.error(e instanceof Error ? `${e.name}${(e as { code?: string }).code ? ` [${(e as { code?: string }).code}]` : ''}: ${e.message}` : e);
    process.exitCode = 1;
  });
}
