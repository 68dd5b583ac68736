// Entry point of each runInProcess worker: builds the Group over the shared-memory transport, imports the
// user's module (ESM or CommonJS), calls its default export fn(group, args) and reports the result.
import { parentPort, workerData } from 'worker_threads';
import { Group } from './group';
import { InProcessTransport, type WorkerInit } from './inprocess';

// A real dynamic import (TypeScript's CommonJS output would turn `import()` into `require()`).
const dynamicImport = new Function('u', 'return import(u)') as (u: string) => Promise<Record<string, unknown>>;

function serializeError(e: unknown) {
  if (e instanceof Error) {
    return { name: e.name, message: e.message, stack: e.stack, code: (e as { code?: unknown }).code as string | undefined };
  }
  return { name: 'Error', message: String(e) };
}

async function main() {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const transport = new InProcessTransport(init, (m) => port.postMessage(m));
  port.on('message', (m) => transport.onMessage(m));
  const group = new Group(transport, { timeoutMs: init.timeoutMs });
  try {
    const mod = await dynamicImport(init.moduleUrl);
    let fn: unknown = mod.default;
    if (typeof fn !== 'function' && fn && typeof (fn as { default?: unknown }).default === 'function') fn = (fn as { default: unknown }).default;
    if (typeof fn !== 'function') throw new TypeError(`runInProcess: ${init.moduleUrl} has no default export function`);
    const value = await (fn as (g: Group, a: unknown) => unknown)(group, init.args);
    transport.release();
    port.postMessage({ type: 'result', value });
  } catch (e) {
    port.postMessage({ type: 'error', error: serializeError(e) });
  }
  // let the thread end once the user's own handles are done (the main thread stops it after a grace)
  port.unref();
}

void main();
