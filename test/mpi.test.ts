// MPI transport: `mpirun -np 4` runs test/fixtures/mpi-worker.mjs. Skipped, with a message, when OpenMPI is
// not installed (scripts/install-mpi.sh installs it; scripts/build-mpi.sh builds the addon).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.join(__dirname, '..');
const worker = path.join(__dirname, 'fixtures', 'mpi-worker.mjs');
function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const haveMpi = has('mpirun') && has('mpicxx');
if (!haveMpi) {
  console.warn('test/mpi.test.ts: SKIPPED: mpirun/mpicxx not found. Install OpenMPI with `bash scripts/install-mpi.sh` to run the MPI tests.');
}

interface Run { code: number | null; out: string; results: Record<string, unknown>[]; ms: number }
function mpirun(np: number, scenario: string, limitMs = 90000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gradzip-mpi-'));
    const args = ['-np', String(np), '--oversubscribe', '--allow-run-as-root', '--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', 'lo',
      '--mca', 'oob_tcp_if_include', 'lo', process.execPath, worker, scenario, dir];
    const p = spawn('mpirun', args, { cwd: root, env: { ...process.env, OMPI_MCA_rmaps_base_oversubscribe: '1' } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`mpirun ${scenario} hung (> ${limitMs} ms):\n${out}`)); }, limitMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      const results = readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')));
      results.sort((a, b) => a.rank - b.rank);
      resolve({ code, out, results, ms: Date.now() - t0 });
    });
  });
}

describe.skipIf(!haveMpi)('comm.mpi() under mpirun -np 4', () => {
  beforeAll(() => {
    execFileSync('bash', [path.join(root, 'scripts', 'build-mpi.sh')], { cwd: root, stdio: 'inherit' });
    expect(existsSync(path.join(root, 'build', 'Release', 'gradzip_mpi.node'))).toBe(true);
  });

  it('every operation: fp32 sum, compressed allgather (exact) and ring (bound), broadcast, barrier, gossip, fusion', async () => {
    const r = await mpirun(4, 'ops');
    expect(r.code, r.out).toBe(0);
    expect(r.results.length, r.out).toBe(4);
    const res = r.results as Record<string, never>[];
    for (const x of res) {
      expect((x.info as { threadMultiple: boolean }).threadMultiple).toBe(true);
      // MPI's own summation order: P - 1 float32 roundings, each <= 2^-24 of sum_j |x_j|
      expect(x.sumMaxRel).toBeLessThanOrEqual(3 * 2 ** -24);
      expect(x.agExact).toBe(true); // mean of the decoded packets, bit for bit
      expect(x.ringWorst).toBeLessThanOrEqual(x.ringBound);
      expect(x.ringWorst).toBeGreaterThan(0);
      expect(x.bcastOk).toBe(true);
      expect((x.stats as { ops: number }).ops).toBe(9);
    }
    // every rank holds identical bits
    for (const k of ['sum', 'ag', 'ring', 'fused']) for (const x of res) expect(x[k]).toEqual(res[0][k]);
    // plain ring gossip (P = 4: weights 1/3 for self and both neighbours), and the sum kept under compression
    const input = (rank: number, n: number, salt: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 0.37 + rank * 1.3 + salt) * (1 + rank) + 0.01 * i));
    const w = Math.fround(1 / 3);
    for (let i = 0; i < 4; i++) {
      const l = (i + 3) % 4, rr = (i + 1) % 4;
      const xi = input(i, 9, 3), xl = input(l, 9, 3), xr = input(rr, 9, 3);
      const [a, b] = l < rr ? [xl, xr] : [xr, xl];
      const want = xi.map((v, k) => Math.fround(Math.fround(Math.fround(w * v) + Math.fround(w * a[k])) + Math.fround(w * b[k])));
      expect(res[i].gossip).toEqual(want);
    }
    for (let k = 0; k < 300; k++) {
      let before = 0, after = 0;
      for (let j = 0; j < 4; j++) { before += input(j, 300, 3)[k]; after += (res[j].gossipQ as number[])[k]; }
      expect(Math.abs(after - before)).toBeLessThan(1e-4 * (Math.abs(before) + 10));
    }
  }, 120000);

  it('a stalled rank: the others reject with ERR_GRADZIP_TIMEOUT within the timeout; later ops reject at once', async () => {
    const r = await mpirun(4, 'timeout');
    const late = r.results.filter((x) => x.rank !== 1);
    expect(late.length, r.out).toBe(3);
    for (const x of late) {
      expect(x.code).toBe('ERR_GRADZIP_TIMEOUT');
      expect(x.elapsedMs as number).toBeGreaterThanOrEqual(690);
      expect(x.elapsedMs as number).toBeLessThan(2500);
      expect(x.after).toBe('ERR_GRADZIP_TIMEOUT');
    }
    expect(r.ms).toBeLessThan(60000);
  }, 120000);

  it('a rank that exits: mpirun ends the job (MPI cannot report it as an error); nothing hangs', async () => {
    const r = await mpirun(4, 'exit', 60000);
    expect(r.code).not.toBe(0);
    expect(r.ms).toBeLessThan(60000);
  }, 120000);
});
