// NCCL transport, checks that need no GPU and no NCCL (CI): comm.nccl exists, the loader explains why NCCL is
// unusable, operations reject with coded GradzipErrors, and the dlopen loader itself (search order, missing
// symbols, version) against two stub libraries compiled here with cc. The GPU run is test/gpu/nccl.test.mjs.
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const gz = require('../dist/cjs/index.js');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const cuda = require('../dist/cjs/cuda.js');

const cinfo = cuda.cudaInfo();
const hasCc = (() => { try { execSync('command -v cc', { stdio: 'ignore', shell: '/bin/bash' }); return true; } catch { return false; } })();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gz-nccl-'));

// A stub libnccl exporting every symbol the transport resolves (ncclGetVersion says 2.99.1), and one that
// lacks most of them. They are only loaded, never used for communication (no device here).
const syms = ['ncclGetUniqueId', 'ncclCommInitRank', 'ncclAllReduce', 'ncclAllGather', 'ncclBroadcast', 'ncclSend', 'ncclRecv',
  'ncclGroupStart', 'ncclGroupEnd', 'ncclCommAbort', 'ncclCommDestroy', 'ncclCommGetAsyncError'];
function stub(name: string, full: boolean): string {
  const src = path.join(dir, `${name}.c`), lib = path.join(dir, `${name}.so`);
  const body = [
    'int ncclGetVersion(int* v) { *v = 29901; return 0; }',
    'const char* ncclGetErrorString(int r) { return "stub"; }',
    ...(full ? syms.map((s) => `int ${s}(void) { return 3; }`) : []),
  ].join('\n');
  fs.writeFileSync(src, body);
  execSync(`cc -shared -fPIC -o ${lib} ${src}`);
  return lib;
}

describe('nccl transport without a GPU', () => {
  it('comm.nccl, comm.ncclUniqueId and comm.ncclInfo exist', () => {
    expect(typeof gz.comm.nccl).toBe('function');
    expect(typeof gz.comm.ncclUniqueId).toBe('function');
    expect(typeof gz.comm.ncclInfo).toBe('function');
  });

  it('the dlopen loader: missing symbols are named; GRADZIP_NCCL_LIB comes first; version reported', () => {
    if (!cinfo.compiled || !hasCc) return;  // no CUDA addon here: the next test covers the reason
    const native = require(cinfo.path);
    const partial = stub('libpartial', false);
    const r1 = native.ncclLoad(['/nonexistent/libnccl.so.2', partial]);
    expect(r1.ok).toBe(false);
    expect(r1.errors[0]).toMatch(/nonexistent.*(No such file|cannot open)/);
    expect(r1.errors[1]).toMatch(/missing symbols ncclGetUniqueId, ncclCommInitRank/);
    const full = stub('libfull', true);
    process.env.GRADZIP_NCCL_LIB = full;
    const info = gz.comm.ncclInfo();
    delete process.env.GRADZIP_NCCL_LIB;
    expect(info.library).toBe(full);
    expect(info.version).toBe(29901);
    expect(info.available).toBe(cinfo.available);
    if (!cinfo.available) expect(info.reason).toMatch(/no usable CUDA device/);
  });

  it('ncclInfo gives a clear reason when unusable; nccl() and ncclUniqueId reject with ERR_GRADZIP_CUDA', async () => {
    const info = gz.comm.ncclInfo();
    if (info.available) return;  // a GPU with NCCL: test/gpu/nccl.test.mjs covers it
    expect(String(info.reason)).toMatch(/CUDA addon is not available|no usable CUDA device|libnccl\.so\.2 not found/);
    let e: any;
    try { await gz.comm.nccl({ rank: 0, size: 1 }); } catch (x) { e = x; }
    expect(e).toBeInstanceOf(gz.GradzipError);
    expect(e.code).toBe('ERR_GRADZIP_CUDA');
    expect(e.message).toMatch(/NCCL transport not available/);
    expect(e.message).toContain(String(info.reason));
    let u: any;
    try { gz.comm.ncclUniqueId(); } catch (x) { u = x; }
    expect(u).toBeInstanceOf(gz.GradzipError);
    expect(u.code).toBe('ERR_GRADZIP_CUDA');
  });

  it('bad arguments are ERR_GRADZIP_INVALID_ARG before anything is loaded', async () => {
    const bad = [
      { rank: 0, size: 0 },
      { rank: 2, size: 2, id: new Uint8Array(128) },
      { rank: 0, size: 2, id: new Uint8Array(16) },
      { rank: 1, size: 2 },  // no id with size > 1
      { rank: 0, size: 1, timeoutMs: -5 },
    ];
    for (const o of bad) {
      let e: any;
      try { await gz.comm.nccl(o); } catch (x) { e = x; }
      expect(e, JSON.stringify({ ...o, id: o.id?.length })).toBeInstanceOf(gz.GradzipError);
      expect(e.code).toMatch(/ERR_GRADZIP_INVALID_ARG|ERR_GRADZIP_CUDA/);
      if (o.size === 0 || o.rank === 2 || o.id?.length === 16 || (o.size === 2 && !o.id)) expect(e.code).toBe('ERR_GRADZIP_INVALID_ARG');
    }
  });
});
