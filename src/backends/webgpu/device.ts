/**
 * Getting a WebGPU device: `navigator.gpu` in browsers, the npm package `webgpu` (Dawn) in Node. The device asks
 * for the adapter's largest storage-buffer limits (weights are bound whole) and for `subgroups` and
 * `timestamp-query` when the adapter offers them.
 */
import { MlaError } from "../../errors.js";

export interface GpuContext {
  /** Held for the device's lifetime: Dawn for Node frees its instance (and everything under it) with this object. */
  readonly gpu: GPU;
  readonly device: GPUDevice;
  readonly adapterInfo: string;
  readonly features: readonly string[];
  readonly limits: { readonly maxStorageBufferBindingSize: number; readonly maxBufferSize: number };
}

const NO_ADAPTER = "no WebGPU adapter found. On Linux without a GPU, install Chromium's SwiftShader (apt-get install chromium " +
  "libvulkan1) and set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json; in a browser, use one with WebGPU enabled";

async function nodeGpu(): Promise<GPU> {
  let mod: { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
  try {
    mod = (await import("webgpu")) as unknown as typeof mod;
  } catch (e) {
    throw new MlaError(`the webgpu backend needs the npm package "webgpu" (Dawn for Node): ${(e as Error).message}`);
  }
  // GPUBufferUsage, GPUMapMode, ... are globals in browsers; the package provides them for Node
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  return mod.create([]);
}

export async function requestGpu(): Promise<GpuContext> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  const gpu = nav?.gpu ?? (typeof process !== "undefined" && process.versions?.node ? await nodeGpu() : undefined);
  if (!gpu) throw new MlaError(NO_ADAPTER);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new MlaError(NO_ADAPTER);
  const wanted = ["subgroups", "timestamp-query"].filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({
    requiredFeatures: wanted,
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(8, adapter.limits.maxStorageBuffersPerShaderStage),
      // the fused MLA attention sizes its tiles by this (16 KiB by default; 32 KiB on SwiftShader, 48 on the H100)
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
    },
  });
  device.lost.then((info) => {
    if (info.reason !== "destroyed") process.stderr?.write?.(`webgpu: device lost: ${info.message}\n`);
  }).catch(() => undefined);
  const info = adapter.info;
  return {
    gpu,
    device,
    adapterInfo: [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(" ") || "unknown adapter",
    features: wanted,
    limits: { maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize, maxBufferSize: device.limits.maxBufferSize },
  };
}
