// Bilinear resize (nearest and pixel shuffle are byte movers in shape.cu), and the phase interleave
// of a nearest-2× upsample + 3×3 conv run as a 2×2 conv at low resolution.
// CPU twins: upsample_bilinear_cpu, upsample_phases_nhwc_cpu.
#include "ops.cuh"

namespace sana {
namespace SANA_CUDA_NS {

static constexpr int kThreads = 256;

// NCHW bilinear resize, align_corners=False, no antialias (PyTorch): src = (dst + 0.5) * in/out - 0.5,
// clamped at 0 below; the upper neighbour is clamped to the last row/column.
static __global__ void upsample_bilinear_kernel(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int dt) {
  const int64_t n = BC * Ho * Wo;
  const float sh = float(H) / float(Ho), sw = float(W) / float(Wo);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    int64_t ox = e % Wo, oy = (e / Wo) % Ho, bc = e / (Wo * Ho);
    float fy = fmaxf((float(oy) + 0.5f) * sh - 0.5f, 0.f), fx = fmaxf((float(ox) + 0.5f) * sw - 0.5f, 0.f);
    int64_t y0 = int64_t(fy) < H - 1 ? int64_t(fy) : H - 1, x0 = int64_t(fx) < W - 1 ? int64_t(fx) : W - 1;
    int64_t y1 = y0 + 1 < H ? y0 + 1 : H - 1, x1 = x0 + 1 < W ? x0 + 1 : W - 1;
    float ly = fy - float(y0), lx = fx - float(x0);
    const int64_t base = bc * H * W;
    float v = (1.f - ly) * ((1.f - lx) * ldf(x, dt, base + y0 * W + x0) + lx * ldf(x, dt, base + y0 * W + x1)) +
              ly * ((1.f - lx) * ldf(x, dt, base + y1 * W + x0) + lx * ldf(x, dt, base + y1 * W + x1));
    stf(out, dt, e, v);
  }
}

Status upsample_bilinear_cuda(void* out, const void* x, int64_t BC, int64_t H, int64_t W, int64_t Ho, int64_t Wo, DType dt, cudaStream_t s) {
  if (BC * Ho * Wo == 0) return nullptr;
  LAUNCH(blocks_for(BC * Ho * Wo, kThreads), kThreads, 0, s, upsample_bilinear_kernel)(out, x, BC, H, W, Ho, Wo, int(dt));
  return SANA_LAUNCH_STATUS("upsampleBilinear");
}

// One thread per output element (b, oy, ox, c); neighbouring threads take neighbouring channels, so
// the phase reads from y and the writes are coalesced.
static __global__ void upsample_phases_nhwc_kernel(void* out, const void* y, const void* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx, int dt) {
  const int64_t n = B * 4 * H * W * C, rep = x ? 4 * C / Cx : 1;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % C, ox = (e / C) % (2 * W), oy = (e / (C * 2 * W)) % (2 * H), b = e / (C * 4 * W * H);
    const int64_t h = oy / 2, i = oy % 2, w = ox / 2, j = ox % 2, p = 2 * i + j;
    float v = ldf(y, dt, ((b * (H + 1) + h + i) * (W + 1) + w + j) * 4 * C + p * C + c);
    if (x) v += ldf(x, dt, ((b * H + h) * W + w) * Cx + (4 * c + p) / rep);
    stf(out, dt, e, v);
  }
}

Status upsample_phases_nhwc_cuda(void* out, const void* y, const void* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t Cx, DType dt, cudaStream_t s) {
  if (x && (Cx <= 0 || (4 * C) % Cx)) return "upsample_phases_nhwc: 4·C must be a multiple of the shortcut's channels";
  const int64_t n = B * 4 * H * W * C;
  if (n == 0) return nullptr;
  LAUNCH(blocks_for(n, kThreads), kThreads, 0, s, upsample_phases_nhwc_kernel)(out, y, x, B, H, W, C, Cx, int(dt));
  return SANA_LAUNCH_STATUS("upsample_phases_nhwc");
}

}  // namespace SANA_CUDA_NS
}  // namespace sana
