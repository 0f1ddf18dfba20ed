// Waiting on the device without taking a CPU core from it.
//
// While a mapAsync, onSubmittedWorkDone or popErrorScope promise is pending, Dawn's Node binding
// re-posts itself with setImmediate and so spins a JS thread at 100%. Under lavapipe the
// kernels run on the same CPU cores, and on two cores that took one from them (a tiny training
// step: 298 -> 207 ms when waits stopped spinning; shared/gpu.md). While a wait is held,
// setImmediate callbacks posted more than SPIN_MS after its start go through setTimeout
// instead: a round trip stays near 0.1 ms, and the core goes back to the kernels.
//
// The hook is global for as long as any wait is held; it is taken off when the last is
// released, unless something else replaced setImmediate meanwhile (then that is left alone).
// clearImmediate is wrapped, once, so that it also cancels the setTimeout handles the hook
// handed out (Node's own clearImmediate must never see one).

/** How long a wait may spin on setImmediate before its re-posts are deferred. */
const SPIN_MS = 2;

let holds = 0;
let since = 0;
let plain: typeof setImmediate | undefined;
let hooked: typeof setImmediate | undefined;
const deferred = new WeakSet<object>();
let clearWrapped = false;

/** Starts a wait: re-posts are deferred after SPIN_MS until the returned release() (idempotent) is called. */
export function holdGently(): () => void {
  since = performance.now();
  if (holds++ === 0) {
    const original = (plain = globalThis.setImmediate);
    hooked = ((fn: (...args: unknown[]) => void, ...args: unknown[]) => {
      if (performance.now() - since < SPIN_MS) return original(fn, ...args);
      const handle = setTimeout(fn, 0, ...args);
      deferred.add(handle);
      return handle;
    }) as unknown as typeof setImmediate;
    globalThis.setImmediate = hooked;
    if (!clearWrapped) {
      clearWrapped = true;
      const originalClear = globalThis.clearImmediate;
      globalThis.clearImmediate = ((h?: object) => (h && deferred.has(h) ? clearTimeout(h as NodeJS.Timeout) : originalClear(h as NodeJS.Immediate))) as typeof clearImmediate;
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holds === 0) {
      if (globalThis.setImmediate === hooked && plain) globalThis.setImmediate = plain;
      hooked = undefined;
    }
  };
}

/** Awaits a promise of the device's with a wait held (holdGently) until it settles. */
export async function gently<T>(p: Promise<T>): Promise<T> {
  const release = holdGently();
  try {
    return await p;
  } finally {
    release();
  }
}
