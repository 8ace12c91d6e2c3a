// Where the module's static data ends: WasmBackend checks that the pool's control block and its heap lie above it.

/** First free byte after the module's static data: the JS allocator starts above this. */
export function heap_base(): usize {
  return __heap_base;
}
