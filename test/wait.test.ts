// Waiting on the device without taking a CPU core from it (runtime/wait.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gently, holdGently } from '../runtime/wait.ts';

const later = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));

test('while a device wait is pending, setImmediate re-posts go through setTimeout after 2 ms; the hook is gone after', async () => {
  const original = globalThis.setImmediate;
  let sawHook = false;
  let delayed = false;
  const probe = (async () => {
    await later(10, 0);
    sawHook = globalThis.setImmediate !== original;
    // past the 2 ms of spinning, a re-post waits for a timer (the event loop's timers phase)
    const t0 = performance.now();
    await new Promise<void>((r) => globalThis.setImmediate(() => r()));
    delayed = performance.now() - t0 >= 0.5;
  })();
  assert.equal(await gently(later(30, 'done')), 'done');
  await probe;
  assert.ok(sawHook, 'setImmediate was not hooked during the wait');
  assert.ok(delayed, 'a re-post during the wait ran at once');
  assert.equal(globalThis.setImmediate, original);
});

test('overlapping waits restore setImmediate only when the last settles, rejections included', async () => {
  const original = globalThis.setImmediate;
  const a = gently(later(10, 1));
  const b = gently(later(30, 2));
  const c = gently(later(20, 0).then(() => Promise.reject(new Error('lost'))));
  assert.equal(await a, 1);
  assert.notEqual(globalThis.setImmediate, original, 'restored while two waits were still pending');
  await assert.rejects(c, /lost/);
  assert.notEqual(globalThis.setImmediate, original, 'restored while a wait was still pending');
  assert.equal(await b, 2);
  assert.equal(globalThis.setImmediate, original);
});

test('a wait released before its promise settles (a lost device) takes the hook off; a deferred re-post can be cleared', async () => {
  const original = globalThis.setImmediate;
  const release = holdGently();
  await later(5, 0);
  // past the spin window: a deferred re-post, cancelled through clearImmediate, never runs,
  // and later immediates still do
  let ran = false;
  globalThis.clearImmediate(globalThis.setImmediate(() => (ran = true)));
  release();
  release(); // idempotent
  assert.equal(globalThis.setImmediate, original);
  await later(5, 0);
  assert.equal(ran, false);
  assert.equal(await new Promise((r) => setImmediate(() => r('after'))), 'after');
});

test('a setImmediate replaced during a wait is left in place when the wait ends', async () => {
  const original = globalThis.setImmediate;
  const release = holdGently();
  const mine = ((fn: () => void) => original(fn)) as unknown as typeof setImmediate;
  globalThis.setImmediate = mine;
  release();
  assert.equal(globalThis.setImmediate, mine);
  globalThis.setImmediate = original;
});
