// conv2d: NCHW, w (Cout, Cin/groups, KH, KW), zero padding, stride, groups.
// conv2d_nhwc: the same convolution on channels-last activations (B, H, W, C) with an optional
// SiLU/ReLU fused as a oneDNN post-op, so a model can stay channels-last between layers and skip
// the per-call NCHW <-> blocked reorders (the DC-AE decoder). Same weight cache as conv2d.
// oneDNN path: convolution primitive with weights reordered once into the primitive's layout
// (cached on the weight with the primitive, by input shape); src/dst reordered to/from the
// primitive's preferred layout through scratch.
// Depthwise (groups == C_in == C_out): direct loops on NCHW on every path. Otherwise, portable:
// im2col written straight into GEMM
// panels, a chunk of output pixels per thread, times the f32 weights (converted once, cached).
#include "gemm.h"
#include "dnnl_util.h"
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace sana {
namespace {

struct ConvCache : WeightCache {
  const void* w = nullptr;
  int64_t Cout = 0, Cin_g = 0, KH = 0, KW = 0, groups = 0;
  DType dt = DType::F32;
  std::mutex mu;
  std::vector<float> wf;  // portable: weights as f32 (Cout, Cin_g*KH*KW)
  size_t bytes() const override {
    size_t n = wf.size() * sizeof(float);
#ifdef SANA_HAVE_DNNL
    for (const auto& p : packed) n += p.md.get_size();
#endif
    return n;
  }
#ifdef SANA_HAVE_DNNL
  bool dnnl_off = false;
  struct Prim {
    dnnl::convolution_forward prim;
    dnnl::memory::desc src, dst;
    dnnl::memory wmem;
  };
  // (B, H, W, stride, pad, bias, out dtype, channels-last, post-op activation)
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, bool, int>, Prim> prims;
  std::vector<cpu::PackedWeight> packed;
#endif
};
std::mutex g_slot_mu;

ConvCache* cache_for(WeightCacheSlot* slot, const void* w, int64_t Cout, int64_t Cin_g, int64_t KH, int64_t KW, int64_t groups, DType dt) {
  std::lock_guard<std::mutex> lock(g_slot_mu);
  auto* c = dynamic_cast<ConvCache*>(slot->get());
  if (!c || c->w != w || c->Cout != Cout || c->Cin_g != Cin_g || c->KH != KH || c->KW != KW || c->groups != groups || c->dt != dt) {
    auto fresh = std::make_unique<ConvCache>();
    fresh->w = w;
    fresh->Cout = Cout;
    fresh->Cin_g = Cin_g;
    fresh->KH = KH;
    fresh->KW = KW;
    fresh->groups = groups;
    fresh->dt = dt;
    c = fresh.get();
    *slot = std::move(fresh);
  }
  return c;
}

// Depthwise conv straight on NCHW rows (oneDNN would reorder to NHWC and back, which costs
// several times the convolution itself for Sana's 5760-channel GLUMBConv).
template <typename T>
void depthwise_t(void* out, DType out_dt, const T* x, const float* wf, const float* bias, int64_t B, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                 int64_t s, int64_t p, int64_t Ho, int64_t Wo) {
  const size_t oes = dtype_size(out_dt);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++) {
      const T* xc = x + (b * C + c) * H * W;
      const float* wc = wf + c * KH * KW;
      float* acc = cpu::scratch_floats(1, size_t(Wo));
      for (int64_t oh = 0; oh < Ho; oh++) {
        for (int64_t ow = 0; ow < Wo; ow++) acc[ow] = bias ? bias[c] : 0.f;
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t ih = oh * s - p + kh;
          if (ih < 0 || ih >= H) continue;
          const T* row = xc + ih * W;
          for (int64_t kw = 0; kw < KW; kw++) {
            const float wv = wc[kh * KW + kw];
            // ow range whose input column iw = ow*s - p + kw lies inside [0, W)
            const int64_t lo = std::max<int64_t>(0, (p - kw + s - 1) / s);
            const int64_t hi = std::min<int64_t>(Wo, (W - 1 + p - kw) / s + 1);
            if (s == 1) {  // contiguous taps: the loop vectorises
              const T* r = row + kw - p;
              for (int64_t ow = lo; ow < hi; ow++) acc[ow] += wv * to_f32(r[ow]);
            } else {
              for (int64_t ow = lo; ow < hi; ow++) acc[ow] += wv * to_f32(row[ow * s - p + kw]);
            }
          }
        }
        cpu::from_float_row(static_cast<char*>(out) + size_t(((b * C + c) * Ho + oh) * Wo) * oes, acc, Wo, out_dt);
      }
    }
}

void conv_portable(ConvCache* c, void* out, const void* x, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t s, int64_t p, int64_t Ho,
                   int64_t Wo, DType out_dt, DType dt) {
  const int64_t Cout = c->Cout, Cin_g = c->Cin_g, KH = c->KH, KW = c->KW, G = c->groups;
  const int64_t Cout_g = Cout / G, K = Cin_g * KH * KW, HWo = Ho * Wo;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->wf.empty()) {
      c->wf.resize(size_t(Cout * K));
      cpu::to_float_row(c->wf.data(), c->w, Cout * K, dt);
    }
  }
  if (G == Cin && Cout == Cin && Cin_g == 1) {
    SANA_FLOAT_DISPATCH(dt, depthwise_t(out, out_dt, static_cast<const T*>(x), c->wf.data(), bias, B, Cin, H, W, KH, KW, s, p, Ho, Wo));
    return;
  }
  constexpr int64_t kNC = 8 * cpu::kNR;  // output pixels per work item
  const int64_t chunks = (HWo + kNC - 1) / kNC;
  const size_t es = dtype_size(dt), oes = dtype_size(out_dt);
#pragma omp parallel for collapse(3) schedule(dynamic)
  for (int64_t b = 0; b < B; b++)
    for (int64_t g = 0; g < G; g++)
      for (int64_t ch = 0; ch < chunks; ch++) {
        const int64_t n0 = ch * kNC, nc = std::min(kNC, HWo - n0);
        float* P = cpu::scratch_floats(2, size_t(cpu::packed_b_floats(K, nc)));
        float* xr = cpu::scratch_floats(3, size_t(W));
        // im2col into panels: element (k, n) -> P[n/16][k][n%16], k = (ci*KH + kh)*KW + kw.
        const int64_t panels = (nc + cpu::kNR - 1) / cpu::kNR;
        std::fill(P, P + panels * K * cpu::kNR, 0.f);
        for (int64_t ci = 0; ci < Cin_g; ci++) {
          const char* xc = static_cast<const char*>(x) + size_t((b * Cin + g * Cin_g + ci) * H * W) * es;
          for (int64_t kh = 0; kh < KH; kh++) {
            int64_t converted = -1;  // input row currently held in xr (f32)
            for (int64_t j = 0; j < nc; j++) {
              const int64_t n = n0 + j, oh = n / Wo, ow = n % Wo, ih = oh * s - p + kh;
              if (ih < 0 || ih >= H) continue;
              if (ih != converted) {
                cpu::to_float_row(xr, xc + size_t(ih * W) * es, W, dt);
                converted = ih;
              }
              for (int64_t kw = 0; kw < KW; kw++) {
                const int64_t iw = ow * s - p + kw;
                if (iw < 0 || iw >= W) continue;
                const int64_t k = (ci * KH + kh) * KW + kw;
                P[(j / cpu::kNR) * K * cpu::kNR + k * cpu::kNR + (j % cpu::kNR)] = xr[iw];
              }
            }
          }
        }
        char* o = static_cast<char*>(out) + size_t((b * Cout + g * Cout_g) * HWo + n0) * oes;
        cpu::gemm_packed(o, out_dt, HWo, c->wf.data() + g * Cout_g * K, K, P, Cout_g, nc, K, nullptr, bias ? bias + g * Cout_g : nullptr, /*serial=*/true);
      }
}

#ifdef SANA_HAVE_DNNL
// Whether a channels-last conv lets oneDNN choose its own src/dst layout (reordering around the
// call, as conv2d does) instead of running on NHWC directly: SANA_CONV_NHWC=any|direct forces it;
// by default direct for 16-bit (the AMX/AVX512-BF16 kernels are NHWC-native) and for f32 too
// unless the direct primitive is a gemm/ref fallback (checked per primitive below).
int nhwc_policy() {
  static const int v = [] {
    const char* e = std::getenv("SANA_CONV_NHWC");
    if (e && std::string(e) == "any") return 1;
    if (e && std::string(e) == "direct") return 2;
    return 0;
  }();
  return v;
}

bool conv_dnnl(ConvCache* c, void* out, const void* x, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t s, int64_t p, int64_t Ho,
               int64_t Wo, DType out_dt, bool nhwc, ConvAct act) {
  using namespace dnnl;
  using tag = memory::format_tag;
  const int64_t G = c->groups;
  const auto wdt = cpu::dnnl_dt(c->dt);
  const memory::dims wdims = G > 1 ? memory::dims{G, c->Cout / G, c->Cin_g, c->KH, c->KW} : memory::dims{c->Cout, c->Cin_g, c->KH, c->KW};
  const tag user_tag = nhwc ? tag::nhwc : tag::nchw;
  const memory::desc user_src({B, Cin, H, W}, wdt, user_tag), user_dst({B, c->Cout, Ho, Wo}, cpu::dnnl_dt(out_dt), user_tag);
  ConvCache::Prim pr;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (c->dnnl_off) return false;
    try {
      const auto key = std::make_tuple(B, H, W, s, p, bias != nullptr, int(out_dt), nhwc, int(act));
      auto it = c->prims.find(key);
      if (it == c->prims.end()) {
        primitive_attr attr;
        if (act != ConvAct::None) {
          post_ops po;
          po.append_eltwise(1.f, act == ConvAct::Silu ? algorithm::eltwise_swish : algorithm::eltwise_relu, act == ConvAct::Silu ? 1.f : 0.f, 0.f);
          attr.set_post_ops(po);
        }
        const auto make_pd = [&](tag io) {
          memory::desc src_md({B, Cin, H, W}, wdt, io), wei_md(wdims, wdt, tag::any);
          memory::desc dst_md({B, c->Cout, Ho, Wo}, cpu::dnnl_dt(out_dt), io), bias_md({c->Cout}, memory::data_type::f32, tag::x);
          auto d = bias
                       ? convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md, wei_md, bias_md, dst_md, {s, s}, {p, p},
                                                   {p, p})
                       : convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md, wei_md, dst_md, {s, s}, {p, p}, {p, p});
          return convolution_forward::primitive_desc(d, attr, cpu::dnnl_engine());
        };
        const int pol = nhwc_policy();
        convolution_forward::primitive_desc pd = make_pd(nhwc && pol != 1 ? tag::nhwc : tag::any);
        if (nhwc && pol == 0) {
          // oneDNN 2.6 may serve an f32 NHWC shape only with its im2col+gemm or reference kernel (an
          // earlier attempt saw 86 vs 293 GFLOP/s on a 3×3 conv); brgconv in its own layout plus two
          // reorders is then the faster choice. No DC-AE decoder shape hits this on AVX-512.
          const std::string impl = pd.impl_info_str();
          if (impl.find("gemm") != std::string::npos || impl.find("ref") != std::string::npos) {
            auto alt = make_pd(tag::any);
            if (std::string(alt.impl_info_str()).find("ref") == std::string::npos) pd = alt;
          }
        }
        if (std::getenv("SANA_CONV_VERBOSE"))
          std::fprintf(stderr, "conv2d%s %ldx%ldx%ldx%ld -> %ld k%ld g%ld: %s\n", nhwc ? "_nhwc" : "", long(B), long(Cin), long(H), long(W), long(c->Cout),
                       long(c->KH), long(c->groups), pd.impl_info_str());
        ConvCache::Prim np{convolution_forward(pd), pd.src_desc(), pd.dst_desc(), memory()};
        const auto want = pd.weights_desc();
        for (auto& pk : c->packed)
          if (pk.md == want) np.wmem = pk.mem;
        if (!np.wmem) {
          memory user(memory::desc(wdims, wdt, G > 1 ? tag::goihw : tag::oihw), cpu::dnnl_engine(), const_cast<void*>(c->w));
          cpu::PackedWeight pw = cpu::packed_weight(want);
          reorder(user, pw.mem).execute(cpu::dnnl_stream(), user, pw.mem);
          cpu::dnnl_stream().wait();
          np.wmem = pw.mem;
          c->packed.push_back(std::move(pw));
        }
        it = c->prims.emplace(key, np).first;
      }
      pr = it->second;
    } catch (const dnnl::error&) {
      c->dnnl_off = true;
      return false;
    }
  }
  auto& eng = cpu::dnnl_engine();
  auto& strm = cpu::dnnl_stream();
  memory usrc(user_src, eng, const_cast<void*>(x)), udst(user_dst, eng, out);
  memory src = usrc, dst = udst;
  if (pr.src != user_src) {
    src = memory(pr.src, eng, cpu::dnnl_scratch(0, pr.src.get_size()));
    reorder(usrc, src).execute(strm, usrc, src);
  }
  if (pr.dst != user_dst) dst = memory(pr.dst, eng, cpu::dnnl_scratch(1, pr.dst.get_size()));
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, pr.wmem}, {DNNL_ARG_DST, dst}};
  if (bias) args.emplace(DNNL_ARG_BIAS, memory(memory::desc({c->Cout}, memory::data_type::f32, tag::x), eng, const_cast<float*>(bias)));
  pr.prim.execute(strm, args);
  if (pr.dst != user_dst) reorder(dst, udst).execute(strm, dst, udst);
  strm.wait();
  return true;
}
#endif

}  // namespace

Status conv2d_cpu(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                  int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, DType out_dt, DType dt, WeightCacheSlot* wcache) {
  if (!dtype_is_float(dt) || !dtype_is_float(out_dt)) return "conv2d_cpu: dtypes must be f32, bf16 or f16";
  if (B == 0 || Cout == 0 || Ho == 0 || Wo == 0) return nullptr;
  WeightCacheSlot local;
  ConvCache* c = cache_for(wcache ? wcache : &local, w, Cout, Cin / groups, KH, KW, groups, dt);
#ifdef SANA_HAVE_DNNL
  const bool depthwise = groups == Cin && Cout == Cin;
  if (cpu::dnnl_fast_dtype(dt) && !depthwise) {
    try {
      if (conv_dnnl(c, out, x, bias, B, Cin, H, W, stride, pad, Ho, Wo, out_dt, false, ConvAct::None)) return nullptr;
    } catch (const dnnl::error& e) {
      thread_local std::string err;
      err = std::string("conv2d: oneDNN failed: ") + e.what();
      return err.c_str();
    }
  }
#endif
  conv_portable(c, out, x, bias, B, Cin, H, W, stride, pad, Ho, Wo, out_dt, dt);
  return nullptr;
}

Status conv2d_nhwc_cpu(void* out, const void* x, const void* w, const float* bias, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t KH,
                       int64_t KW, int64_t stride, int64_t pad, int64_t groups, int64_t Ho, int64_t Wo, ConvAct act, DType out_dt, DType dt,
                       WeightCacheSlot* wcache) {
  if (!dtype_is_float(dt) || !dtype_is_float(out_dt)) return "conv2d_nhwc_cpu: dtypes must be f32, bf16 or f16";
  if (B == 0 || Cout == 0 || Ho == 0 || Wo == 0) return nullptr;
  WeightCacheSlot local;
  ConvCache* c = cache_for(wcache ? wcache : &local, w, Cout, Cin / groups, KH, KW, groups, dt);
#ifdef SANA_HAVE_DNNL
  // Depthwise included: on channels-last there is no reorder for oneDNN to pay.
  if (cpu::dnnl_fast_dtype(dt)) {
    try {
      if (conv_dnnl(c, out, x, bias, B, Cin, H, W, stride, pad, Ho, Wo, out_dt, true, act)) return nullptr;
    } catch (const dnnl::error& e) {
      thread_local std::string err;
      err = std::string("conv2d_nhwc: oneDNN failed: ") + e.what();
      return err.c_str();
    }
  }
#endif
  // Portable: the NCHW kernel between two transposes (no oneDNN, or f16), activation on the way out.
  const size_t es = dtype_size(dt), oes = dtype_size(out_dt);
  std::vector<char> xt(size_t(B * Cin * H * W) * es);
  const int64_t in_shape[4] = {B, H, W, Cin};
  const int32_t to_nchw[4] = {0, 3, 1, 2};
  permute_cpu(xt.data(), x, 4, in_shape, to_nchw, es);
  const int64_t HWo = Ho * Wo;
  std::vector<float> ot(size_t(B * Cout * HWo));  // (B, Cout, Ho, Wo)
  conv_portable(c, ot.data(), xt.data(), bias, B, Cin, H, W, stride, pad, Ho, Wo, DType::F32, dt);
#pragma omp parallel for schedule(static) if (B * HWo * Cout > cpu::kParallelMin)
  for (int64_t bp = 0; bp < B * HWo; bp++) {
    const int64_t b = bp / HWo, px = bp % HWo;
    float* row = cpu::scratch_floats(1, size_t(Cout));
    for (int64_t co = 0; co < Cout; co++) {
      const float v = ot[size_t((b * Cout + co) * HWo + px)];
      row[co] = act == ConvAct::Silu ? cpu::silu_f(v) : act == ConvAct::Relu ? std::max(v, 0.f) : v;
    }
    cpu::from_float_row(static_cast<char*>(out) + size_t(bp * Cout) * oes, row, Cout, out_dt);
  }
  return nullptr;
}

}  // namespace sana
