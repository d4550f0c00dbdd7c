// The fiber scheduler and runtime-API subset behind cuda_emu.h (see that file for the model).
#include "cuda_emu.h"

#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace sana_emu {

thread_local ThreadState* g_thread = nullptr;
thread_local BlockState g_block;
thread_local unsigned char* g_dyn_smem = nullptr;

namespace {

constexpr size_t kStackBytes = 64 * 1024;   // kernels keep small register-like arrays only
constexpr size_t kMaxDynSmem = 227 * 1024;  // sm_90's opt-in limit per block

// --- fiber contexts -------------------------------------------------------------------------
// On x86-64 a 14-instruction switch of the callee-saved registers and the stack pointer: every
// barrier, shuffle and mma is a round of switches, and glibc's swapcontext (a sigprocmask
// system call per switch) made the emulation ~20x slower. Elsewhere, ucontext.
#if defined(__x86_64__) && !defined(SANA_EMU_UCONTEXT)
struct Ctx {
  void* sp = nullptr;
};
extern "C" void sana_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl sana_emu_switch
  .hidden sana_emu_switch
  .type sana_emu_switch, @function
sana_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size sana_emu_switch, .-sana_emu_switch
)");
inline void ctx_switch(Ctx& from, Ctx& to) { sana_emu_switch(&from.sp, to.sp); }
// A fresh context whose first switch-in "returns" into entry with the stack aligned as after a call.
inline void ctx_make(Ctx& c, Ctx&, char* stack, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                         // entry's return address: entry never returns
  *--sp = reinterpret_cast<void*>(entry);  // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  c.sp = sp;
}
#else
struct Ctx {
  ucontext_t uc;
};
inline void ctx_switch(Ctx& from, Ctx& to) { swapcontext(&from.uc, &to.uc); }
inline void ctx_make(Ctx& c, Ctx& link, char* stack, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = &link.uc;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
  Ctx ctx;
  ThreadState ts;
  bool done;
};
struct Warp {
  int size, live, arrived;
  unsigned gen;
  alignas(16) unsigned char slot[32][16];
  uint32_t a[32][4], b[32][2];
  float c[32][4];
};
struct Run {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int live = 0, bar_arrived = 0;
  unsigned bar_gen = 0;
  Ctx sched;
  const std::function<void()>* body = nullptr;
  bool progress = false, failed = false;
  std::string err;
};

thread_local Run* g_run = nullptr;
thread_local Fiber* g_fiber = nullptr;
thread_local std::vector<std::unique_ptr<char[]>> g_stacks;
thread_local std::vector<unsigned char> g_dyn_buf;
thread_local cudaError_t g_last_error = cudaSuccess;
thread_local EmuCounters g_counters{0, 0, 0, 0};

std::mutex g_mem_mu;
std::unordered_map<void*, size_t> g_allocs;
size_t g_allocated = 0;

void yield_to_scheduler() {
  ++g_counters.switches;
  ctx_switch(g_fiber->ctx, g_run->sched);
}

[[noreturn]] void fail_here(const std::string& what) {
  Run* R = g_run;
  if (!R->failed) {
    R->failed = true;
    char where[96];
    std::snprintf(where, sizeof where, " (block %u,%u,%u thread %u,%u,%u)", g_block.bid.x, g_block.bid.y, g_block.bid.z, g_thread->tid.x, g_thread->tid.y,
                  g_thread->tid.z);
    R->err = what + where;
  }
  // The fiber is abandoned (never resumed); its stack is reused by the next launch.
  ctx_switch(g_fiber->ctx, R->sched);
  std::abort();
}

void fiber_entry() {
  Run* R = g_run;
  Fiber* f = g_fiber;
  (*R->body)();
  f->done = true;
  R->progress = true;
  // Exited threads no longer count for barriers (as on sm_70+ hardware for __syncthreads).
  --R->live;
  if (R->bar_arrived > 0 && R->bar_arrived == R->live) {
    R->bar_arrived = 0;
    ++R->bar_gen;
  }
  Warp& W = R->warps[f->ts.warp];
  --W.live;
  if (W.arrived > 0 && W.arrived == W.live) {
    W.arrived = 0;
    ++W.gen;
  }
  ctx_switch(f->ctx, R->sched);  // done: never resumed
}

Warp& full_warp(unsigned mask, const char* op) {
  Warp& W = g_run->warps[g_thread->warp];
  if (mask != 0xffffffffu) fail_here(std::string(op) + ": only full-warp masks are emulated");
  if (W.size != 32) fail_here(std::string(op) + ": block size is not a multiple of 32 (partial warp)");
  if (W.live != 32) fail_here(std::string(op) + ": called after some lanes of the warp exited (undefined on hardware)");
  return W;
}

void warp_barrier(Warp& W) {
  Run* R = g_run;
  R->progress = true;
  unsigned g = W.gen;
  if (++W.arrived == W.live) {
    W.arrived = 0;
    ++W.gen;
    return;
  }
  do { yield_to_scheduler(); } while (W.gen == g);
}

}  // namespace

void syncthreads() {
  Run* R = g_run;
  R->progress = true;
  unsigned g = R->bar_gen;
  if (++R->bar_arrived == R->live) {
    R->bar_arrived = 0;
    ++R->bar_gen;
    return;
  }
  do { yield_to_scheduler(); } while (R->bar_gen == g);
}

void syncwarp(unsigned mask) { warp_barrier(full_warp(mask, "__syncwarp")); }

void warp_exchange(const void* v, void* out, int bytes, int src_lane, unsigned mask) {
  Warp& W = full_warp(mask, "__shfl_sync");
  if (src_lane < 0 || src_lane > 31) fail_here("__shfl_sync: source lane out of range");
  std::memcpy(W.slot[g_thread->lane], v, size_t(bytes));
  warp_barrier(W);
  std::memcpy(out, W.slot[src_lane], size_t(bytes));
  warp_barrier(W);
}

static inline float half_bits_to_f32(uint16_t h, bool bf16) {
  if (bf16) return __uint_as_float(uint32_t(h) << 16);
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    float v = float(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return __uint_as_float(sign | ((exp + 112) << 23) | (man << 13));
}

void mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4], bool bf16) {
  Warp& W = full_warp(0xffffffffu, "mma.sync");
  const int lane = g_thread->lane;
  std::memcpy(W.a[lane], a, 16);
  std::memcpy(W.b[lane], b, 8);
  std::memcpy(W.c[lane], c, 16);
  warp_barrier(W);
  // PTX ISA, "Matrix Fragments for mma.m16n8k16" (.bf16/.f16, f32 accumulators):
  //   groupID = lane/4, tig = lane%4.
  //   A (16x16, row-major): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
  //   B (16x8, "col"):      b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
  //   C/D (16x8 f32):       c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..)
  //   Each 32-bit register holds two elements, the lower index in the low half.
  auto A = [&](int row, int k) {
    int owner = (row % 8) * 4 + (k % 8) / 2;
    int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    uint32_t v = W.a[owner][reg];
    return half_bits_to_f32(uint16_t((k & 1) ? v >> 16 : v & 0xffffu), bf16);
  };
  auto B = [&](int k, int col) {
    int owner = col * 4 + (k % 8) / 2;
    uint32_t v = W.b[owner][k >= 8 ? 1 : 0];
    return half_bits_to_f32(uint16_t((k & 1) ? v >> 16 : v & 0xffffu), bf16);
  };
  auto C = [&](int row, int col) {
    int owner = (row % 8) * 4 + col / 2;
    return W.c[owner][(row >= 8 ? 2 : 0) + (col & 1)];
  };
  const int g = lane / 4, t = lane % 4;
  float res[4];
  for (int r = 0; r < 4; ++r) {
    int row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
    // Products of two 16-bit floats are exact in f32, as in the tensor core; the sum is f32.
    float acc = C(row, col);
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    res[r] = acc;
  }
  warp_barrier(W);
  std::memcpy(d, res, 16);
}

void device_fail(const char* what) { fail_here(std::string("device error: ") + what); }

void launch_impl(dim3 grid, dim3 block, size_t smem, cudaStream_t, const std::function<void()>& body) {
  if (g_run != nullptr) {
    // A kernel launching a kernel would need dynamic parallelism; none of ours does.
    device_fail("nested launch");
  }
  const unsigned long nthreads = (unsigned long)block.x * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || smem > kMaxDynSmem) {
    g_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  ++g_counters.launches;
  if (g_dyn_buf.size() < smem) g_dyn_buf.resize(smem);
  g_dyn_smem = smem ? g_dyn_buf.data() : nullptr;
  while (g_stacks.size() < nthreads) g_stacks.emplace_back(new char[kStackBytes]);

  Run R;
  R.body = &body;
  R.fibers.resize(nthreads);
  const int nwarps = int((nthreads + 31) / 32);
  R.warps.resize(size_t(nwarps));
  g_block.bdim = block;
  g_block.gdim = grid;
  g_run = &R;
  for (unsigned bz = 0; bz < grid.z && !R.failed; ++bz)
    for (unsigned by = 0; by < grid.y && !R.failed; ++by)
      for (unsigned bx = 0; bx < grid.x && !R.failed; ++bx) {
        ++g_counters.blocks;
        g_block.bid = uint3{bx, by, bz};
        R.live = int(nthreads);
        R.bar_arrived = 0;
        for (int w = 0; w < nwarps; ++w) {
          Warp& W = R.warps[size_t(w)];
          W.size = W.live = std::min(32, int(nthreads) - 32 * w);
          W.arrived = 0;
        }
        for (unsigned long i = 0; i < nthreads; ++i) {
          Fiber& f = R.fibers[i];
          f.done = false;
          f.ts.linear = int(i);
          f.ts.lane = int(i % 32);
          f.ts.warp = int(i / 32);
          f.ts.tid = uint3{unsigned(i % block.x), unsigned((i / block.x) % block.y), unsigned(i / (block.x * block.y))};
          ctx_make(f.ctx, R.sched, g_stacks[i].get(), kStackBytes, fiber_entry);
        }
        g_counters.threads += nthreads;
        // Odd blocks run their threads in reverse order between barriers, so a missing barrier
        // shows up whichever side of it (lower or higher thread index) reads the other's data.
        const bool reverse = ((bx + by + bz) & 1) != 0;
        while (R.live > 0 && !R.failed) {
          bool any = false;
          for (unsigned long fi = 0; fi < nthreads; ++fi) {
            Fiber& f = R.fibers[reverse ? nthreads - 1 - fi : fi];
            if (f.done) continue;
            R.progress = false;
            g_fiber = &f;
            g_thread = &f.ts;
            ++g_counters.switches;
            ctx_switch(R.sched, f.ctx);
            if (R.failed) break;
            any = any || R.progress;
          }
          if (!any && !R.failed) {
            R.failed = true;
            R.err = "deadlock: some threads wait at a barrier that the others never reach (block " + std::to_string(bx) + "," + std::to_string(by) + "," +
                    std::to_string(bz) + ")";
          }
        }
      }
  g_run = nullptr;
  g_fiber = nullptr;
  g_thread = nullptr;
  if (R.failed) {
    g_last_error = cudaErrorLaunchFailure;
    std::fprintf(stderr, "[cuda-emu] launch failed: %s\n", R.err.c_str());
    last_failure() = R.err;
  }
}

std::string& last_failure() {
  static thread_local std::string s;
  return s;
}

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  // 256-byte alignment, as cudaMalloc guarantees (kernels rely on it for vector loads).
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
  if (*p == nullptr) return g_last_error = cudaErrorMemoryAllocation;
  std::lock_guard<std::mutex> lk(g_mem_mu);
  g_allocs[*p] = bytes;
  g_allocated += bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lk(g_mem_mu);
    auto it = g_allocs.find(p);
    if (it == g_allocs.end()) return g_last_error = cudaErrorInvalidValue;
    g_allocated -= it->second;
    g_allocs.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t) { return cudaMemcpy(dst, src, bytes, k); }
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
struct EmuStream {
  int id;
};
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new EmuStream{1};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lk(g_mem_mu);
  *total_bytes = size_t(64) << 30;
  *free_bytes = *total_bytes - g_allocated;
  return cudaSuccess;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulation: see last_failure())";
  }
  return "unknown error";
}
EmuCounters counters() { return g_counters; }

}  // namespace sana_emu
