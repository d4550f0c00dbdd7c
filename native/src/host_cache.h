// Host memory for CPU tensors, with freed large blocks kept for reuse (see host_cache.cc).
#pragma once
#include <cstddef>

namespace sana {
void* host_cache_alloc(size_t n);
void host_cache_free(void* p);
// Bytes held in freed blocks waiting for reuse (not counted as allocated by the tracker).
size_t host_cache_bytes();
// Returns every cached block to the system; returns the bytes released.
size_t host_cache_trim();
}  // namespace sana
