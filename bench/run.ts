// gradzip benchmark runner: `npm run bench` (full: 4 KiB .. 256 MiB, threads 1 and 2) or `npm run bench -- --quick`.
// Options: --kernel qsgd,topk   --sizes 64M,1M   --threads 1,2   --max-time 1 (seconds per case)   --no-overhead
//          --tag NAME (files <date>-NAME-*, so a focused run does not overwrite the day's full run)
//          --replot (no measurement: rebuild the summary and the chart from the day's <date>-<kernel>.json files,
//          e.g. after re-running one kernel with --kernel)
// Writes bench/results/<date>-<kernel>.json per kernel, <date>-overhead.json, <date>-summary.md and the chart
// <date>-throughput.svg (copied to bench/results/throughput.svg, the one README shows). A quick run writes the same
// files with a tmp- prefix (git-ignored).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chartSvg } from './chart';
import { FULL_SIZES, QUICK_SIZES, fmtSize, machine, parseSize, runKernel, type Args, type Kernel, type Row } from './common';
import { kernel as nonuniform } from './nonuniform.bench';
import { kernel as onebit } from './onebit.bench';
import { runOverhead } from './overhead.bench';
import { kernel as qsgd } from './qsgd.bench';
import { kernel as randomk } from './randomk.bench';
import { kernel as terngrad } from './terngrad.bench';
import { kernel as topk } from './topk.bench';

const KERNELS: Kernel[] = [qsgd, terngrad, onebit, topk, randomk, nonuniform];

function parseArgs(argv: string[]): Args & { overhead: boolean } {
  const get = (k: string) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : undefined; };
  const quick = argv.includes('--quick');
  const sizes = get('--sizes')?.split(',').map(parseSize) ?? (quick ? QUICK_SIZES : FULL_SIZES);
  const date = new Date().toISOString().slice(0, 10);
  return {
    quick,
    kernels: get('--kernel')?.split(',') ?? null,
    sizes,
    threads: get('--threads')?.split(',').map(Number) ?? [1, 2],
    maxTime: Number(get('--max-time') ?? (quick ? 0.25 : 1)),
    outDir: path.resolve(__dirname, '..', '..', 'bench', 'results'),
    tag: `${quick ? 'tmp-' : ''}${date}${get('--tag') ? '-' + get('--tag') : ''}`,
    overhead: !argv.includes('--no-overhead'),
  };
}

function summaryTable(rows: Row[], bytes: number): string {
  const at = rows.filter((r) => r.bytes === bytes);
  if (!at.length) return '';
  const lines = [
    `### ${fmtSize(bytes)} (GB/s = f32 input bytes / best time; ratio = GB/s / memcpy GB/s of the same suite)`,
    '',
    '| codec | op | 1 thread GB/s | ratio to memcpy | 2 threads GB/s | ratio to memcpy | memcpy GB/s (same suite) | size ratio | rel. error |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  const keys = [...new Set(at.filter((r) => r.op !== 'memcpy' && r.op !== 'Buffer.copy').map((r) => `${r.codec}|${r.op}`))];
  for (const k of keys) {
    const [codec, op] = k.split('|');
    const t1 = at.find((r) => r.codec === codec && r.op === op && r.threads === 1);
    const t2 = at.find((r) => r.codec === codec && r.op === op && r.threads === 2);
    const cr = at.find((r) => r.codec === codec && r.compressionRatio !== undefined);
    const f = (r?: Row) => (r ? r.gbps.toFixed(2) : '');
    const g = (r?: Row) => (r ? `${r.ratio.toFixed(2)}x` : '');
    lines.push(`| ${codec} | ${op} | ${f(t1)} | ${g(t1)} | ${f(t2)} | ${g(t2)} | ${(t1 ?? t2)?.memcpyGbps.toFixed(2) ?? ''} | ${op === 'compress' || op === 'naive-ts-compress' ? (cr?.compressionRatio?.toFixed(2) ?? '') + 'x' : ''} | ${op === 'compress' || op === 'naive-ts-compress' ? (cr?.relError?.toFixed(3) ?? '') : ''} |`);
  }
  const bc = at.find((r) => r.op === 'Buffer.copy');
  if (bc) lines.push('', `Buffer.copy: ${bc.gbps.toFixed(2)} GB/s.`);
  return lines.join('\n');
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.outDir, { recursive: true });
  if (process.argv.includes('--replot')) return replot(args);
  const m = machine();
  console.log(`gradzip benchmarks (${args.quick ? 'quick' : 'full'}): ${m.cpu}, ${m.cores} cores, node ${m.node}, load ${m.loadavg.map((l) => l.toFixed(1)).join(' ')}; sizes ${args.sizes.map(fmtSize).join(', ')}; threads ${args.threads.join(', ')}`);
  if (!(global as any).gc) console.log('(run node with --expose-gc to collect between suites)');
  const all: Row[] = [];
  const data = new Map<number, Float32Array>();
  const started = new Date().toISOString();
  for (const k of KERNELS) {
    if (args.kernels && !args.kernels.includes(k.name)) continue;
    const rows = await runKernel(k, args, data);
    all.push(...rows);
    const file = path.join(args.outDir, `${args.tag}-${k.name}.json`);
    writeFileSync(file, JSON.stringify({ kernel: k.name, started, machine: m, quick: args.quick, sizes: args.sizes, threads: args.threads, definitions: { gbps: 'f32 input bytes / best sample time (benchmark.js cycle mean), 1e9 bytes', ratio: 'gbps / memcpy gbps (Float32Array.set, same suite, best of its two runs)' }, rows }, null, 2));
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  }
  data.clear();
  (global as any).gc?.();
  let overhead: Overhead | null = null;
  if (args.overhead && (!args.kernels || args.kernels.includes('overhead'))) {
    overhead = await runOverhead(args);
    writeFileSync(path.join(args.outDir, `${args.tag}-overhead.json`), JSON.stringify({ started, machine: m, quick: args.quick, ...overhead }, null, 2));
  }
  if (all.length) writeReports(all, overhead, m, [started], args, !args.quick && !args.kernels && !process.argv.includes('--tag'));
}

type Overhead = Awaited<ReturnType<typeof runOverhead>>;

function replot(args: Args): void {
  const all: Row[] = [];
  const starts: string[] = [];
  let m: any = null;
  for (const k of KERNELS) {
    const f = path.join(args.outDir, `${args.tag}-${k.name}.json`);
    if (!existsSync(f)) continue;
    const j = JSON.parse(readFileSync(f, 'utf8'));
    all.push(...j.rows);
    starts.push(`${k.name} ${j.started}`);
    m ??= j.machine;
  }
  const of = path.join(args.outDir, `${args.tag}-overhead.json`);
  const overhead: Overhead | null = existsSync(of) ? JSON.parse(readFileSync(of, 'utf8')) : null;
  if (!all.length) throw new Error(`no ${args.tag}-<kernel>.json files in ${args.outDir}`);
  args.sizes = [...new Set(all.map((r) => r.bytes))].sort((a, b) => a - b);
  writeReports(all, overhead, m, starts, args, !args.quick && !process.argv.includes('--tag'));
}

function writeReports(all: Row[], overhead: Overhead | null, m: any, starts: string[], args: Args, copyChart: boolean): void {
  const started = starts.length === 1 ? starts[0] : starts.join('; ');
  const headline = args.sizes.includes(64 << 20) ? 64 << 20 : args.sizes[args.sizes.length - 1];
  const others = args.sizes.filter((s) => s !== headline);
  const md = [
    `# gradzip benchmark summary (${started}${args.quick ? ', quick' : ''})`,
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, node ${m.node}, load average at start ${(m.loadavg ?? []).map((l: number) => l.toFixed(1)).join(" / ")} (at the end of the report ${os.loadavg().map((l) => l.toFixed(1)).join(' / ')}). Gaussian f32 input. qsgd s = 4, bucket 512, l2; topk / randomk 1%; nonuniform 8 levels.`,
    '',
    summaryTable(all, headline),
    '',
    ...(overhead ? ['## Per-call overhead (1,000 floats)', '', '| call | median us | p10 | p90 |', '|---|---|---|---|',
      ...overhead.perCall.map((p) => `| ${p.what} | ${p.medianUs.toFixed(2)} | ${p.p10Us.toFixed(2)} | ${p.p90Us.toFixed(2)} |`), '',
      `Event-loop delay during compressAsync of ${fmtSize(overhead.eventLoop.bytes)} (${overhead.eventLoop.codec}, ${overhead.eventLoop.asyncMsPerCall.toFixed(1)} ms per call; the sync call takes ${overhead.eventLoop.syncMsPerCall.toFixed(1)} ms): p50 ${overhead.eventLoop.p50Ms.toFixed(2)} ms, p99 ${overhead.eventLoop.p99Ms.toFixed(2)} ms, max ${overhead.eventLoop.maxMs.toFixed(2)} ms (idle p99 ${overhead.eventLoop.idleP99Ms.toFixed(2)} ms).`, ''] : []),
    '## Other sizes',
    '',
    ...others.map((s) => summaryTable(all, s) + '\n'),
  ].join('\n');
  const mdFile = path.join(args.outDir, `${args.tag}-summary.md`);
  writeFileSync(mdFile, md);
  console.log(`\n${summaryTable(all, headline)}\n\nwrote ${path.relative(process.cwd(), mdFile)}`);
  const svgFile = path.join(args.outDir, `${args.tag}-throughput.svg`);
  writeFileSync(svgFile, chartSvg(all, `gradzip throughput vs size (${m.cpu}, ${starts[0].replace(/^\w+ /, '').slice(0, 10)}${args.quick ? ', quick run' : ''})`));
  if (copyChart) copyFileSync(svgFile, path.join(args.outDir, 'throughput.svg'));
  console.log(`wrote ${path.relative(process.cwd(), svgFile)}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
