// Mixing matrices for gossip: built-in ring and torus (Metropolis-Hastings weights), validation of a
// user matrix (square, finite, entries in [0, 1], symmetric, rows summing to 1, spectral gap < 1).
import { commError } from './util';

export type Topology = 'ring' | 'torus' | number[][] | Float64Array[];

/** Metropolis-Hastings weights of an undirected graph: W_ij = 1 / (1 + max(d_i, d_j)) for each edge,
 *  W_ii = 1 - sum of the row. Symmetric and doubly stochastic for any graph; W_ii > 0, so the chain is
 *  aperiodic and the spectral gap is < 1 whenever the graph is connected. */
export function metropolis(adj: Set<number>[]): number[][] {
  const P = adj.length;
  const W: number[][] = Array.from({ length: P }, () => new Array<number>(P).fill(0));
  for (let i = 0; i < P; i++) {
    for (const j of adj[i]) if (j !== i) W[i][j] = 1 / (1 + Math.max(adj[i].size, adj[j].size));
  }
  for (let i = 0; i < P; i++) {
    let s = 0;
    for (let j = 0; j < P; j++) if (j !== i) s += W[i][j];
    W[i][i] = 1 - s;
  }
  return W;
}

function addEdge(adj: Set<number>[], a: number, b: number) {
  if (a === b) return;
  adj[a].add(b);
  adj[b].add(a);
}

/** Ring: rank i talks to i-1 and i+1 (mod P). P = 3 and up: weights 1/3; P = 2: 1/2; P = 1: [1]. */
export function ringMatrix(P: number): number[][] {
  const adj = Array.from({ length: P }, () => new Set<number>());
  for (let i = 0; i < P; i++) addEdge(adj, i, (i + 1) % P);
  return metropolis(adj);
}

/** Torus shape for P ranks: rows x cols with rows the largest divisor of P not above sqrt(P). */
export function torusShape(P: number): [number, number] {
  let r = Math.floor(Math.sqrt(P));
  while (r > 1 && P % r !== 0) r--;
  return [r, P / r];
}

/** 2-D torus (rows x cols, rank = row * cols + col), neighbours up, down, left, right with wrap-around
 *  (duplicate edges merged when a side is 1 or 2). With rows = 1 it is the ring. */
export function torusMatrix(P: number): number[][] {
  const [R, C] = torusShape(P);
  const adj = Array.from({ length: P }, () => new Set<number>());
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const i = r * C + c;
      addEdge(adj, i, r * C + ((c + 1) % C));
      addEdge(adj, i, ((r + 1) % R) * C + c);
    }
  }
  return metropolis(adj);
}

/** Eigenvalues of a symmetric matrix by the cyclic Jacobi method (descending order). */
export function symmetricEigenvalues(A: number[][]): number[] {
  const n = A.length;
  const a = A.map((row) => Array.from(row));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p][q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          // rotate columns p and q
          const akp = a[k][p], akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          // rotate rows p and q
          const apk = a[p][k], aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
      }
    }
  }
  return a.map((row, i) => row[i]).sort((x, y) => y - x);
}

export interface MixingInfo {
  W: number[][];
  /** spectral gap parameter rho = max(|lambda_2|, |lambda_P|) (0 for P = 1) */
  rho: number;
  eigenvalues: number[];
}

const TOL = 1e-9;

/** Checks a mixing matrix for P ranks: square P x P, finite entries in [0, 1], symmetric, every row
 *  summing to 1 (so doubly stochastic), and rho = max(|lambda_2|, |lambda_P|) < 1. */
export function validateMixingMatrix(W: ArrayLike<ArrayLike<number>>, P: number): MixingInfo {
  if (!W || typeof (W as { length?: unknown }).length !== 'number' || W.length !== P) {
    throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: the mixing matrix must be ${P} x ${P} (one row per rank)`);
  }
  const M: number[][] = [];
  for (let i = 0; i < P; i++) {
    const row = W[i];
    if (!row || row.length !== P) throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: row ${i} of the mixing matrix must have ${P} entries`);
    const r: number[] = [];
    for (let j = 0; j < P; j++) {
      const v = row[j];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
        throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: W[${i}][${j}] = ${String(v)} is not a number in [0, 1]`);
      }
      r.push(v);
    }
    M.push(r);
  }
  for (let i = 0; i < P; i++) {
    let s = 0;
    for (let j = 0; j < P; j++) {
      s += M[i][j];
      if (Math.abs(M[i][j] - M[j][i]) > TOL) {
        throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: the mixing matrix is not symmetric (W[${i}][${j}] = ${M[i][j]}, W[${j}][${i}] = ${M[j][i]})`);
      }
    }
    if (Math.abs(s - 1) > TOL) {
      throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: row ${i} of the mixing matrix sums to ${s}, not 1 (W must be doubly stochastic)`);
    }
  }
  const eig = P === 1 ? [1] : symmetricEigenvalues(M);
  const rho = P === 1 ? 0 : Math.max(Math.abs(eig[1]), Math.abs(eig[P - 1]));
  if (!(rho < 1 - TOL)) {
    throw commError('ERR_GRADZIP_INVALID_ARG',
      `gossip: the mixing matrix has no spectral gap (rho = max(|lambda_2|, |lambda_P|) = ${rho}; the graph must be connected and not bipartite-periodic)`);
  }
  return { W: M, rho, eigenvalues: eig };
}

/** The mixing matrix for a topology name or a user matrix, validated. */
export function mixingMatrix(topology: Topology, P: number): MixingInfo {
  if (topology === 'ring') return validateMixingMatrix(ringMatrix(P), P);
  if (topology === 'torus') return validateMixingMatrix(torusMatrix(P), P);
  if (Array.isArray(topology)) return validateMixingMatrix(topology as number[][], P);
  throw commError('ERR_GRADZIP_INVALID_ARG', `gossip: topology must be 'ring', 'torus' or a ${P} x ${P} matrix`);
}
