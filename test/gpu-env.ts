/**
 * WebGPU for tests: on a machine without a GPU, Dawn runs on Chromium's SwiftShader (Vulkan on the CPU) when
 * VK_ICD_FILENAMES points at it; this sets that up when the file exists and the variable is unset. The tests
 * fail (they are not skipped) when no adapter is found: CI installs chromium and libvulkan1 (see .ci/run).
 */
import { existsSync } from "node:fs";
import { after } from "node:test";
import { WebGpuBackend } from "../src/backends/webgpu/backend.js";

const SWIFTSHADER = "/usr/lib/chromium/vk_swiftshader_icd.json";

let shared: Promise<WebGpuBackend> | null = null;

/**
 * Dawn (npm webgpu 0.6) crashes in its teardown when Node exits by itself; an explicit process.exit after the
 * file's tests (and their report) are done exits cleanly. Call from the test file's top level.
 */
export function exitAfterTests(): void {
  after(() => {
    setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
  });
}

/** Point this process (and the children that inherit its environment) at SwiftShader when no ICD is chosen. */
export function useSwiftShaderIfNoGpu(): void {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;
  process.env.XDG_RUNTIME_DIR ??= "/tmp";
}

export function gpuBackend(): Promise<WebGpuBackend> {
  useSwiftShaderIfNoGpu();
  shared ??= WebGpuBackend.create();
  return shared;
}
