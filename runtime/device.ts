// Acquiring a WebGPU device through Dawn's Node binding (npm `webgpu`): the real GPU where
// there is one, Mesa's software Vulkan (lavapipe) elsewhere (see README, "Setup").
import { create, globals } from 'webgpu';
import { MtcError } from '../compiler/diagnostics.ts';
import { holdGently } from './wait.ts';

Object.assign(globalThis, globals);

export interface Gpu {
  device: GPUDevice;
  /** e.g. "llvmpipe (mesa), fallback" */
  description: string;
  hasF16: boolean;
  /** The device was asked for timestamp queries (acquireDevice's `timestamps`) and has them. */
  hasTimestamps: boolean;
  /**
   * Awaits work on the device (mapAsync, popErrorScope, ...). If the device is lost before
   * it settles, rejects with an MtcError that says so and what to do, instead of the binding's
   * bare AbortError or a wait that never ends. `doing` completes "the device was lost while ...".
   */
  settle<T>(work: Promise<T>, doing: string): Promise<T>;
  /** Destroys the device; call before process exit (the binding can hang otherwise). */
  close(): void;
}

/** The message for a lost device: what happened, what is kept, what to try. */
export function deviceLostError(info: GPUDeviceLostInfo, doing: string): MtcError {
  const why = [info.reason, info.message].filter(Boolean).join(': ') || 'no reason given';
  return new MtcError(
    `the WebGPU device was lost while ${doing} (${why}), so the run stopped there. ` +
      'Checkpoints already written are kept: check the GPU driver (nvidia-smi, or the Vulkan driver under software rendering) ' +
      'and run again; a training run continues from its last checkpoint with --resume.',
  );
}

// If a loss is not followed by the end of the run (work awaited outside settle() that never
// settles), report it and exit after this long rather than hang.
const LOST_EXIT_MS = 10_000;

// Keep the object returned by create() alive for the life of the process: if it is
// garbage-collected, the next wait aborts the process (Dawn node binding,
// "std::system_error: Invalid argument").
let navigatorGpu: GPU | undefined;

/**
 * The device of the adapter Dawn picks (high performance), or with MTC_ADAPTER set, of the
 * adapter whose name contains it (Dawn's `adapter=` flag; a name that matches none makes Dawn
 * print the adapters it has, so MTC_ADAPTER=? lists them). `mtc run sweep --adapters` spreads
 * its jobs over adapters this way.
 */
/** @param opts.timestamps ask for timestamp queries where the adapter has them (profiling: Session.profileStep) */
export async function acquireDevice(opts: { timestamps?: boolean } = {}): Promise<Gpu> {
  const wantedAdapter = process.env.MTC_ADAPTER?.trim();
  navigatorGpu ??= create(wantedAdapter ? [`adapter=${wantedAdapter}`] : []);
  let adapter: GPUAdapter | null;
  try {
    adapter = await navigatorGpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    if (!wantedAdapter) throw e;
    const listed = String((e as Error).message ?? e).replace(/^[^\n]*\n?/, '').trim(); // Dawn: "no suitable backends found\nAvailable adapters: ..."
    throw new MtcError(`no WebGPU adapter's name contains '${wantedAdapter}' (MTC_ADAPTER)${listed ? `; ${listed.replace(/\s*\n\s*/g, ' ')}` : ''}. Unset MTC_ADAPTER to take the default adapter`);
  }
  if (!adapter && wantedAdapter) {
    throw new MtcError(`no WebGPU adapter's name contains '${wantedAdapter}' (MTC_ADAPTER); unset MTC_ADAPTER to take the default adapter`);
  }
  if (!adapter) {
    throw new MtcError(
      'no WebGPU adapter found: install a Vulkan driver (on a machine without a GPU run `bash scripts/setup.sh` for Mesa\'s software Vulkan) and try again',
    );
  }
  const wanted: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has('shader-f16');
  if (hasF16) wanted.push('shader-f16');
  const hasTimestamps = !!opts.timestamps && adapter.features.has('timestamp-query');
  if (hasTimestamps) wanted.push('timestamp-query');
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures: wanted,
    requiredLimits: {
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    },
  });
  // A lost device (driver reset, GPU removed, out of memory in the driver) fails the awaited
  // work with a message (settle); destroy() in close() at the end of a run is not a loss.
  let closing = false;
  let lostInfo: GPUDeviceLostInfo | undefined;
  let lostExit: ReturnType<typeof setTimeout> | undefined;
  let signalLost!: () => void;
  const lostSignal = new Promise<void>((r) => (signalLost = r));
  const waiters = new Set<(info: GPUDeviceLostInfo) => void>();
  void device.lost.then((info) => {
    if (closing && info.reason === 'destroyed') return;
    lostInfo = info;
    signalLost();
    for (const w of waiters) w(info);
    lostExit = setTimeout(() => {
      process.stderr.write(`mtc: error: ${deviceLostError(info, 'the run was waiting on it').message}\n`);
      process.exit(1);
    }, LOST_EXIT_MS);
  });
  const settle = async <T>(work: Promise<T>, doing: string): Promise<T> => {
    work.catch(() => {}); // once the device is lost, work's own rejection is expected
    if (lostInfo) throw deviceLostError(lostInfo, doing);
    let fail!: (info: GPUDeviceLostInfo) => void;
    const onLoss = new Promise<never>((_, reject) => (fail = (info) => reject(deviceLostError(info, doing))));
    waiters.add(fail);
    const release = holdGently(); // released however the wait ends, a lost device included
    try {
      return await Promise.race([work, onLoss]);
    } catch (e) {
      if (e instanceof MtcError) throw e;
      // The binding may reject pending work (AbortError, no message) just before it reports
      // the loss: give the report a moment to arrive.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([lostSignal, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      if (lostInfo) throw deviceLostError(lostInfo, doing);
      throw e;
    } finally {
      release();
      waiters.delete(fail);
    }
  };
  device.addEventListener('uncapturederror', (ev) => {
    const e = (ev as GPUUncapturedErrorEvent).error;
    console.error(`mtc: WebGPU error: ${e.message}`);
  });
  const info = adapter.info;
  const description = `${info.device || info.description || 'unknown device'} (${info.vendor || 'unknown vendor'})${
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter ? ', software' : ''
  }`;
  return {
    device,
    description,
    hasF16,
    hasTimestamps,
    settle,
    close: () => {
      closing = true;
      clearTimeout(lostExit);
      device.destroy();
    },
  };
}

/** Compile WGSL and fail loudly on any error (Dawn can otherwise skip a bad shader silently). */
export async function compileShader(device: GPUDevice, code: string, label: string): Promise<GPUShaderModule> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code, label });
  const info = await module.getCompilationInfo();
  const err = await device.popErrorScope();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length || err) {
    const msgs = errors.map((m) => `${label}:${m.lineNum}:${m.linePos}: ${m.message}`);
    if (err) msgs.push(err.message);
    throw new MtcError(
      `the WGSL kernel ${label} failed to compile on this device, so nothing was run; this is a compiler bug, please report it with the model file:\n${msgs.join('\n')}`,
    );
  }
  return module;
}
