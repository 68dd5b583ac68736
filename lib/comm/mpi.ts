// placeholder, replaced below
export interface MpiOptions { timeoutMs?: number }
export function mpiAvailable(): boolean { return false; }
export async function mpi(_opts: MpiOptions = {}): Promise<never> { throw new Error('not yet'); }
