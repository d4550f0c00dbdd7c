// Large host buffers come from mmap in glibc and go back to the system when freed, so every op's
// fresh output used to pay one page fault (and a page of zeroing) per 4 KiB: element-wise ops of
// the DC-AE decoder ran at ~1.3 GB/s instead of 10-30 GB/s, and a 512² decode took 9.3 s instead
// of 4.9 s. Freed blocks of 256 KiB or more are therefore kept, by rounded size, and handed out
// again; a model's per-step shapes repeat, so nearly every allocation after the first step hits.
//   SANA_HOST_CACHE_MB   budget for the cached (freed) bytes; default min(RAM/8, 4 GiB); 0 = off
//   SANA_HOST_CACHE_POISON=1   fill reused blocks with 0xFF (NaN) so code that relies on fresh
//                              memory being zero fails loudly (the tests set it)
// Blocks of 4 MiB or more are 2 MiB-aligned and marked MADV_HUGEPAGE: one fault per 2 MiB on
// first touch where the kernel's transparent huge pages are in madvise mode.
#include "host_cache.h"
#include <sys/mman.h>
#include <unistd.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace sana {
namespace {

constexpr size_t kMinCached = 256 * 1024;
constexpr size_t kHugeFrom = 4 * 1024 * 1024;
constexpr size_t kHuge = 2 * 1024 * 1024;

size_t default_budget() {
  if (const char* s = std::getenv("SANA_HOST_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(s, &end, 10);
    if (end && *end == '\0' && mb >= 0) return size_t(mb) * 1024 * 1024;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  const size_t ram = pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(8) << 30;
  const size_t eighth = ram / 8, cap = size_t(4) << 30;
  return eighth < cap ? eighth : cap;
}

/** Sizes that share a cache slot: exact below 256 KiB (not cached), then steps of 1/16 of the
 *  next power of two (at most 6.25% slack), at least 64 KiB. */
size_t rounded_size(size_t n) {
  if (n < kMinCached) return (n + 63) & ~size_t(63);
  size_t p = 1;
  while (p < n) p <<= 1;
  size_t g = p / 16;
  if (g < 64 * 1024) g = 64 * 1024;
  return (n + g - 1) / g * g;
}

struct Cache {
  std::mutex mu;
  size_t budget = default_budget();
  bool poison = [] {
    const char* s = std::getenv("SANA_HOST_CACHE_POISON");
    return s && s[0] == '1';
  }();
  size_t cached = 0;
  std::unordered_map<void*, size_t> live;   // cacheable blocks in use -> rounded size
  std::list<std::pair<size_t, void*>> lru;  // freed blocks, oldest first
  std::unordered_map<size_t, std::vector<std::list<std::pair<size_t, void*>>::iterator>> by_size;
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: frees may come from exit-time destructors
  return *c;
}

void* system_alloc(size_t r) {
  if (r >= kHugeFrom) {
    void* p = std::aligned_alloc(kHuge, (r + kHuge - 1) & ~(kHuge - 1));
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, (r + kHuge - 1) & ~(kHuge - 1), MADV_HUGEPAGE);
#endif
    return p;
  }
  return std::aligned_alloc(64, r);
}

void drop_oldest(Cache& c) {
  auto it = c.lru.begin();
  auto& v = c.by_size[it->first];
  for (size_t i = 0; i < v.size(); i++)
    if (v[i] == it) {
      v[i] = v.back();
      v.pop_back();
      break;
    }
  c.cached -= it->first;
  std::free(it->second);
  c.lru.erase(it);
}

}  // namespace

void* host_cache_alloc(size_t n) {
  const size_t r = rounded_size(n ? n : 1);
  if (r < kMinCached) return std::aligned_alloc(64, r);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto f = c.by_size.find(r);
    if (f != c.by_size.end() && !f->second.empty()) {
      auto it = f->second.back();  // the most recently freed block of this size (warmest)
      f->second.pop_back();
      void* p = it->second;
      c.lru.erase(it);
      c.cached -= r;
      c.live.emplace(p, r);
      if (c.poison) std::memset(p, 0xFF, r);
      return p;
    }
  }
  void* p = system_alloc(r);
  if (!p) {
    // Out of memory: give the cached blocks back and try once more.
    host_cache_trim();
    p = system_alloc(r);
    if (!p) return nullptr;
  }
  std::lock_guard<std::mutex> lock(c.mu);
  c.live.emplace(p, r);
  return p;
}

void host_cache_free(void* p) {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto l = c.live.find(p);
  if (l == c.live.end()) {
    std::free(p);
    return;
  }  // a small block
  const size_t r = l->second;
  c.live.erase(l);
  if (r > c.budget) {
    std::free(p);
    return;
  }
  while (c.cached + r > c.budget && !c.lru.empty()) drop_oldest(c);
  c.lru.emplace_back(r, p);
  c.by_size[r].push_back(std::prev(c.lru.end()));
  c.cached += r;
}

size_t host_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached;
}

size_t host_cache_trim() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  const size_t released = c.cached;
  while (!c.lru.empty()) drop_oldest(c);
  c.by_size.clear();
  return released;
}

}  // namespace sana
