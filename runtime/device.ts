// Acquiring a WebGPU device through Dawn's Node binding (npm `webgpu`): the real GPU where
// there is one, Mesa's software Vulkan (lavapipe) elsewhere (see README, "Setup").
import { create, globals } from 'webgpu';
import { MtcError } from '../compiler/diagnostics.ts';

Object.assign(globalThis, globals);

export interface Gpu {
  device: GPUDevice;
  /** e.g. "llvmpipe (mesa), fallback" */
  description: string;
  hasF16: boolean;
  /** Destroys the device; call before process exit (the binding can hang otherwise). */
  close(): void;
}

// Keep the object returned by create() alive for the life of the process: if it is
// garbage-collected, the next wait aborts the process (Dawn node binding,
// "std::system_error: Invalid argument").
let navigatorGpu: GPU | undefined;

export async function acquireDevice(): Promise<Gpu> {
  navigatorGpu ??= create([]);
  const adapter = await navigatorGpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new MtcError(
      'no WebGPU adapter found: install a Vulkan driver (on a machine without a GPU run `bash scripts/setup.sh` for Mesa\'s software Vulkan) and try again',
    );
  }
  const wanted: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has('shader-f16');
  if (hasF16) wanted.push('shader-f16');
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
  // A lost device (driver reset, GPU removed, out of memory in the driver) ends the run with
  // a message instead of a hang; destroy() at the end of a run is not a loss.
  void device.lost.then((info) => {
    if (info.reason === 'destroyed') return;
    process.stderr.write(
      `mtc: error: the WebGPU device was lost (${info.reason || 'unknown reason'}: ${info.message}). ` +
        'The last checkpoint of the run is kept; check the GPU driver (nvidia-smi, or the Vulkan driver under software rendering) and rerun with --resume.\n',
    );
    process.exit(1);
  });
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
    close: () => device.destroy(),
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
