// One N-API function per op: read (storage, byteOffset) pairs and sizes in the order of the
// C-level signature (native/cpu/ops.h), check every buffer is large enough for the sizes given
// and lives on the output's backend, then dispatch through that backend's table.
// Shape logic (broadcasting, output shapes, dtype promotion) lives in native/backend.ts.
#include "binding.h"
#include <cmath>

namespace sana {

// --- Args ------------------------------------------------------------------------------------

TRef Args::tensor(const char* name, bool optional, bool packed_ok) {
  TRef t;
  Napi::Value sv = info_[i_++], ov = info_[i_++];
  if (sv.IsNull() || sv.IsUndefined()) {
    if (!optional) fail(std::string(name) + " is required");
    return t;
  }
  auto* data = info_.Env().GetInstanceData<AddonData>();
  if (!sv.IsObject() || !sv.As<Napi::Object>().InstanceOf(data->storage_ctor.Value())) {
    fail(std::string(name) + " is not a tensor storage");
    return t;
  }
  Storage* s = Storage::Unwrap(sv.As<Napi::Object>());
  if (s->freed) {
    fail(std::string(name) + " was disposed");
    return t;
  }
  if (s->source_released && !packed_ok) {
    fail(std::string(name) + " had its data released after packing (it can only be a linear weight now)");
    return t;
  }
  if (!ov.IsNumber() || ov.As<Napi::Number>().DoubleValue() < 0) {
    fail(std::string(name) + ": bad byte offset");
    return t;
  }
  if (!be_) be_ = s->be;
  else if (be_ != s->be) {
    fail(std::string(name) + " is on '" + s->be->name + "' but the output is on '" + be_->name + "'");
    return t;
  }
  t.s = s;
  t.off = size_t(ov.As<Napi::Number>().Int64Value());
  return t;
}
int64_t Args::i64(const char* name) {
  Napi::Value v = info_[i_++];
  if (!v.IsNumber()) {
    fail(std::string(name) + " must be a number");
    return 0;
  }
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d) || std::fabs(d) > 9.0e15) {
    fail(std::string(name) + " must be an integer");
    return 0;
  }
  return int64_t(d);
}
double Args::f64(const char* name) {
  Napi::Value v = info_[i_++];
  if (!v.IsNumber()) {
    fail(std::string(name) + " must be a number");
    return 0;
  }
  return v.As<Napi::Number>().DoubleValue();
}
// Any value converts to a boolean, so there is no error to name; the name keeps the reader
// calls uniform.
bool Args::flag([[maybe_unused]] const char* name) { return info_[i_++].ToBoolean(); }
DType Args::dtype(const char* name) {
  const int64_t d = i64(name);
  if (d < 0 || d > 4) {
    fail(std::string(name) + " is not a dtype code");
    return DType::F32;
  }
  return DType(d);
}
std::vector<int64_t> Args::i64s(const char* name) {
  std::vector<int64_t> out;
  Napi::Value v = info_[i_++];
  if (!v.IsArray()) {
    fail(std::string(name) + " must be an array");
    return out;
  }
  auto a = v.As<Napi::Array>();
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) {
      fail(std::string(name) + " must hold numbers");
      return out;
    }
    out.push_back(e.As<Napi::Number>().Int64Value());
  }
  return out;
}
void Args::need_bytes(const TRef& t, int64_t bytes, const char* name) {
  if (!t || !ok()) return;
  if (bytes < 0 || t.off + uint64_t(bytes) > t.s->nbytes)
    fail(std::string(name) + " needs " + std::to_string(bytes) + " bytes at offset " + std::to_string(t.off) + " but its storage has " +
         std::to_string(t.s->nbytes));
}
void Args::need(const TRef& t, int64_t elems, DType dt, const char* name) { need_bytes(t, elems * int64_t(dtype_size(dt)), name); }

// Elements an input spans under a broadcast: 1 + Σ (shape-1)·stride.
static int64_t span(const Broadcast& bc, int k) {
  int64_t s = 1;
  for (int d = 0; d < bc.ndim; d++) {
    if (bc.shape[d] == 0) return 0;
    s += (bc.shape[d] - 1) * bc.stride[k][d];
  }
  return s;
}
static bool read_broadcast(Args& a, int nin, Broadcast& bc) {
  const auto shape = a.i64s("shape");
  bc.ndim = int(shape.size());
  if (bc.ndim > kMaxDims) {
    a.fail("more than 8 dims after collapsing");
    return false;
  }
  for (int d = 0; d < bc.ndim; d++) bc.shape[d] = shape[d];
  for (int k = 0; k < nin; k++) {
    const auto st = a.i64s("strides");
    if (int(st.size()) != bc.ndim) {
      a.fail("strides do not match the shape");
      return false;
    }
    for (int d = 0; d < bc.ndim; d++) {
      if (st[d] < 0) {
        a.fail("negative stride");
        return false;
      }
      bc.stride[k][d] = st[d];
    }
  }
  return a.ok();
}
static int64_t numel(const Broadcast& bc) {
  int64_t n = 1;
  for (int d = 0; d < bc.ndim; d++) n *= bc.shape[d];
  return n;
}

#define OP(name) static Napi::Value name(const Napi::CallbackInfo& info)

OP(Fill) {
  Args a(info, "fill");
  auto out = a.tensor("out");
  const int64_t n = a.i64("n");
  const double v = a.f64("value");
  const DType dt = a.dtype("dt");
  a.need(out, n, dt, "out");
  return a.finish(a.be() ? a.be()->fill : nullptr, [&](auto fn) { return fn(out.ptr(), n, v, dt); });
}
OP(Cast) {
  Args a(info, "cast");
  auto out = a.tensor("out"), in = a.tensor("in");
  const int64_t n = a.i64("n");
  const DType odt = a.dtype("out_dt"), idt = a.dtype("in_dt");
  a.need(out, n, odt, "out");
  a.need(in, n, idt, "in");
  return a.finish(a.be() ? a.be()->cast : nullptr, [&](auto fn) { return fn(out.ptr(), in.ptr(), n, odt, idt); });
}
OP(Permute) {
  Args a(info, "permute");
  auto out = a.tensor("out"), in = a.tensor("in");
  const auto shape = a.i64s("in_shape"), perm64 = a.i64s("perm");
  const int64_t es = a.i64("elsize");
  std::vector<int32_t> perm;
  int64_t n = 1;
  if (shape.size() != perm64.size() || shape.size() > size_t(kMaxDims)) a.fail("perm does not match the shape (or more than 8 dims)");
  std::vector<bool> seen(shape.size(), false);
  for (auto p : perm64) {
    if (p < 0 || p >= int64_t(shape.size()) || seen[size_t(p)]) {
      a.fail("perm is not a permutation");
      break;
    }
    seen[size_t(p)] = true;
    perm.push_back(int32_t(p));
  }
  for (auto s : shape) n *= s;
  a.need_bytes(out, n * es, "out");
  a.need_bytes(in, n * es, "in");
  return a.finish(a.be() ? a.be()->permute : nullptr,
                  [&](auto fn) { return fn(out.ptr(), in.ptr(), int(shape.size()), shape.data(), perm.data(), size_t(es)); });
}
// concat(out, outOff, [storage, off, storage, off, ...], axisLens, outer, inner, elsize)
OP(Concat) {
  Args a(info, "concat");
  auto out = a.tensor("out");
  Napi::Value list = a.raw();
  const auto axis_lens = a.i64s("axis_lens");
  const int64_t outer = a.i64("outer"), inner = a.i64("inner"), es = a.i64("elsize");
  std::vector<const void*> ptrs;
  auto* data = info.Env().GetInstanceData<AddonData>();
  if (!list.IsArray()) a.fail("inputs must be an array");
  Napi::Array arr = list.IsArray() ? list.As<Napi::Array>() : Napi::Array::New(info.Env());
  if (a.ok() && arr.Length() != 2 * axis_lens.size()) a.fail("axis_lens and inputs differ in length");
  int64_t total = 0;
  for (uint32_t k = 0; a.ok() && k < axis_lens.size(); k++) {
    Napi::Value sv = arr.Get(2 * k), ov = arr.Get(2 * k + 1);
    if (!sv.IsObject() || !sv.As<Napi::Object>().InstanceOf(data->storage_ctor.Value()) || !ov.IsNumber()) {
      a.fail("inputs[" + std::to_string(k) + "] is not a tensor storage");
      break;
    }
    TRef t;
    t.s = Storage::Unwrap(sv.As<Napi::Object>());
    t.off = size_t(ov.As<Napi::Number>().Int64Value());
    if (t.s->freed) {
      a.fail("inputs[" + std::to_string(k) + "] was disposed");
      break;
    }
    if (out && t.s->be != out.s->be) {
      a.fail("inputs[" + std::to_string(k) + "] is not on the output's device");
      break;
    }
    if (axis_lens[k] < 0) {
      a.fail("negative axis length");
      break;
    }
    a.need_bytes(t, outer * axis_lens[k] * inner * es, "input");
    ptrs.push_back(t.ptr());
    total += axis_lens[k];
  }
  a.need_bytes(out, outer * total * inner * es, "out");
  return a.finish(a.be() ? a.be()->concat : nullptr,
                  [&](auto fn) { return fn(out.ptr(), ptrs.data(), axis_lens.data(), int(ptrs.size()), outer, inner, size_t(es)); });
}
OP(Slice) {
  Args a(info, "slice");
  auto out = a.tensor("out"), in = a.tensor("in");
  const int64_t outer = a.i64("outer"), axis = a.i64("axis_len"), inner = a.i64("inner"), start = a.i64("start"), len = a.i64("len"), es = a.i64("elsize");
  if (start < 0 || len < 0 || start + len > axis) a.fail("range outside the axis");
  a.need_bytes(out, outer * len * inner * es, "out");
  a.need_bytes(in, outer * axis * inner * es, "in");
  return a.finish(a.be() ? a.be()->slice : nullptr, [&](auto fn) { return fn(out.ptr(), in.ptr(), outer, axis, inner, start, len, size_t(es)); });
}
OP(IndexSelect) {
  Args a(info, "indexSelect");
  auto out = a.tensor("out"), in = a.tensor("in");
  const auto idx = a.i64s("indices");
  const int64_t outer = a.i64("outer"), axis = a.i64("axis_len"), inner = a.i64("inner"), es = a.i64("elsize");
  for (size_t k = 0; a.ok() && k < idx.size(); k++)
    if (idx[k] < 0 || idx[k] >= axis)
      a.fail("indices[" + std::to_string(k) + "] = " + std::to_string(idx[k]) + " is outside [0, " + std::to_string(axis) + ")");
  a.need_bytes(out, outer * int64_t(idx.size()) * inner * es, "out");
  a.need_bytes(in, outer * axis * inner * es, "in");
  return a.finish(a.be() ? a.be()->index_select : nullptr,
                  [&](auto fn) { return fn(out.ptr(), in.ptr(), idx.data(), int64_t(idx.size()), outer, axis, inner, size_t(es)); });
}
OP(RepeatInterleave) {
  Args a(info, "repeatInterleave");
  auto out = a.tensor("out"), in = a.tensor("in");
  const int64_t outer = a.i64("outer"), axis = a.i64("axis_len"), inner = a.i64("inner"), rep = a.i64("repeats"), es = a.i64("elsize");
  if (rep < 0) a.fail("repeats must be >= 0");
  a.need_bytes(out, outer * axis * rep * inner * es, "out");
  a.need_bytes(in, outer * axis * inner * es, "in");
  return a.finish(a.be() ? a.be()->repeat_interleave : nullptr, [&](auto fn) { return fn(out.ptr(), in.ptr(), outer, axis, inner, rep, size_t(es)); });
}
OP(Unary) {
  Args a(info, "unary");
  auto out = a.tensor("out"), in = a.tensor("in");
  const int64_t n = a.i64("n"), op = a.i64("op");
  const float p0 = float(a.f64("p0")), p1 = float(a.f64("p1"));
  const DType dt = a.dtype("dt");
  if (op < 0 || op > int64_t(UnaryOp::Clamp)) a.fail("unknown unary op");
  a.need(out, n, dt, "out");
  a.need(in, n, dt, "in");
  return a.finish(a.be() ? a.be()->unary : nullptr, [&](auto fn) { return fn(out.ptr(), in.ptr(), n, UnaryOp(op), p0, p1, dt); });
}
// binary(out, o, a, o, b, o, op, dt, shape, stridesA, stridesB)
OP(Binary) {
  Args a(info, "binary");
  auto out = a.tensor("out"), x = a.tensor("a"), y = a.tensor("b");
  const int64_t op = a.i64("op");
  const DType dt = a.dtype("dt");
  Broadcast bc{};
  read_broadcast(a, 2, bc);
  if (op < 0 || op > int64_t(BinaryOp::GluGelu)) a.fail("unknown binary op");
  a.need(out, numel(bc), dt, "out");
  a.need(x, span(bc, 0), dt, "a");
  a.need(y, span(bc, 1), dt, "b");
  return a.finish(a.be() ? a.be()->binary : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), y.ptr(), &bc, BinaryOp(op), dt); });
}
OP(Ternary) {
  Args a(info, "ternary");
  auto out = a.tensor("out"), x = a.tensor("a"), y = a.tensor("b"), z = a.tensor("c");
  const int64_t op = a.i64("op");
  const DType dt = a.dtype("dt");
  Broadcast bc{};
  read_broadcast(a, 3, bc);
  if (op < 0 || op > int64_t(TernaryOp::AddGated)) a.fail("unknown ternary op");
  a.need(out, numel(bc), dt, "out");
  a.need(x, span(bc, 0), dt, "a");
  a.need(y, span(bc, 1), dt, "b");
  a.need(z, span(bc, 2), dt, "c");
  return a.finish(a.be() ? a.be()->ternary : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), y.ptr(), z.ptr(), &bc, TernaryOp(op), dt); });
}
OP(Softmax) {
  Args a(info, "softmax");
  auto out = a.tensor("out"), x = a.tensor("x");
  const int64_t rows = a.i64("rows"), C = a.i64("C");
  const DType dt = a.dtype("dt");
  a.need(out, rows * C, dt, "out");
  a.need(x, rows * C, dt, "x");
  return a.finish(a.be() ? a.be()->softmax : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), rows, C, dt); });
}
OP(Linear) {
  Args a(info, "linear");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", false, true), bias = a.tensor("bias", true);
  const int64_t M = a.i64("M"), N = a.i64("N"), K = a.i64("K");
  const DType odt = a.dtype("out_dt"), dt = a.dtype("dt");
  a.need(out, M * N, odt, "out");
  a.need(x, M * K, dt, "x");
  a.need(w, N * K, dt, "w");
  a.need(bias, N, DType::F32, "bias");
  Napi::Value r = a.finish(a.be() ? a.be()->linear : nullptr,
                           [&](auto fn) { return fn(out.ptr(), x.ptr(), w.ptr(), static_cast<const float*>(bias.ptr()), M, N, K, odt, dt, &w.s->wcache); });
  if (w) w.s->sync_cache_bytes();
  return r;
}
// linearResidual(out, o, x, o, w, o, bias, o, res, o, gate, o, M, N, K, gate_rows, out_dt, dt)
OP(LinearResidual) {
  Args a(info, "linearResidual");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", false, true), bias = a.tensor("bias", true), res = a.tensor("res"),
       gate = a.tensor("gate", true);
  const int64_t M = a.i64("M"), N = a.i64("N"), K = a.i64("K"), gr = a.i64("gate_rows");
  const DType odt = a.dtype("out_dt"), dt = a.dtype("dt");
  if (gate && (gr <= 0 || M % gr)) a.fail("gate_rows must divide M");
  a.need(out, M * N, odt, "out");
  a.need(x, M * K, dt, "x");
  a.need(w, N * K, dt, "w");
  a.need(bias, N, DType::F32, "bias");
  a.need(res, M * N, odt, "res");
  if (gate && gr > 0) a.need(gate, M / gr * N, odt, "gate");
  Napi::Value r = a.finish(a.be() ? a.be()->linear_residual : nullptr, [&](auto fn) {
    return fn(out.ptr(), x.ptr(), w.ptr(), static_cast<const float*>(bias.ptr()), res.ptr(), gate.ptr(), M, N, K, gr, odt, dt, &w.s->wcache);
  });
  if (w) w.s->sync_cache_bytes();
  return r;
}
OP(Matmul) {
  Args a(info, "matmul");
  auto out = a.tensor("out"), x = a.tensor("a"), y = a.tensor("b");
  const int64_t batch = a.i64("batch"), M = a.i64("M"), N = a.i64("N"), K = a.i64("K"), sa = a.i64("a_bstride"), sb = a.i64("b_bstride");
  const bool transB = a.flag("transB");
  const DType odt = a.dtype("out_dt"), dt = a.dtype("dt");
  a.need(out, batch * M * N, odt, "out");
  a.need(x, batch > 0 ? (batch - 1) * sa + M * K : 0, dt, "a");
  a.need(y, batch > 0 ? (batch - 1) * sb + K * N : 0, dt, "b");
  return a.finish(a.be() ? a.be()->matmul : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), y.ptr(), batch, M, N, K, sa, sb, transB, odt, dt); });
}
// The arguments conv2d and conv2dNhwc share, read in their positional order (B … Wo).
struct ConvDims {
  int64_t B, Cin, H, W, Cout, KH, KW, s, p, g, Ho, Wo;
  explicit ConvDims(Args& a)
      : B(a.i64("B")),
        Cin(a.i64("Cin")),
        H(a.i64("H")),
        W(a.i64("W")),
        Cout(a.i64("Cout")),
        KH(a.i64("KH")),
        KW(a.i64("KW")),
        s(a.i64("stride")),
        p(a.i64("pad")),
        g(a.i64("groups")),
        Ho(a.i64("Ho")),
        Wo(a.i64("Wo")) {}
  void check_kernel(Args& a) const {
    if (g <= 0 || Cin % g || Cout % g || s <= 0 || p < 0 || KH <= 0 || KW <= 0) a.fail("bad groups/stride/padding/kernel");
  }
  void check_output(Args& a) const {
    if (a.ok() && (Ho != (H + 2 * p - KH) / s + 1 || Wo != (W + 2 * p - KW) / s + 1 || Ho < 0 || Wo < 0)) a.fail("output size does not match the convolution");
  }
  // x, out, w and bias hold their sizes (the same element counts in either layout).
  void need(Args& a, const TRef& out, const TRef& x, const TRef& w, const TRef& bias, DType odt, DType dt) const {
    a.need(out, B * Cout * Ho * Wo, odt, "out");
    a.need(x, B * Cin * H * W, dt, "x");
    a.need(w, g > 0 ? Cout * (Cin / g) * KH * KW : 0, dt, "w");
    a.need(bias, Cout, DType::F32, "bias");
  }
};
OP(Conv2d) {
  Args a(info, "conv2d");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w"), bias = a.tensor("bias", true);
  const ConvDims c(a);
  const DType odt = a.dtype("out_dt"), dt = a.dtype("dt");
  c.check_kernel(a);
  c.check_output(a);
  c.need(a, out, x, w, bias, odt, dt);
  Napi::Value r = a.finish(a.be() ? a.be()->conv2d : nullptr, [&](auto fn) {
    return fn(out.ptr(), x.ptr(), w.ptr(), static_cast<const float*>(bias.ptr()), c.B, c.Cin, c.H, c.W, c.Cout, c.KH, c.KW, c.s, c.p, c.g, c.Ho, c.Wo, odt, dt,
              &w.s->wcache);
  });
  if (w) w.s->sync_cache_bytes();
  return r;
}
OP(Conv2dNhwc) {
  Args a(info, "conv2dNhwc");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w"), bias = a.tensor("bias", true);
  const ConvDims c(a);
  const int64_t act = a.i64("act");
  const DType odt = a.dtype("out_dt"), dt = a.dtype("dt");
  c.check_kernel(a);
  if (act < 0 || act > 2) a.fail("act must be 0 (none), 1 (silu) or 2 (relu)");
  c.check_output(a);
  c.need(a, out, x, w, bias, odt, dt);
  Napi::Value r = a.finish(a.be() ? a.be()->conv2d_nhwc : nullptr, [&](auto fn) {
    return fn(out.ptr(), x.ptr(), w.ptr(), static_cast<const float*>(bias.ptr()), c.B, c.Cin, c.H, c.W, c.Cout, c.KH, c.KW, c.s, c.p, c.g, c.Ho, c.Wo,
              ConvAct(act), odt, dt, &w.s->wcache);
  });
  if (w) w.s->sync_cache_bytes();
  return r;
}
OP(UpsamplePhasesNhwc) {
  Args a(info, "upsamplePhasesNhwc");
  auto out = a.tensor("out"), y = a.tensor("y"), x = a.tensor("x", true);
  const int64_t B = a.i64("B"), H = a.i64("H"), W = a.i64("W"), C = a.i64("C"), Cx = a.i64("Cx");
  const DType dt = a.dtype("dt");
  if (B < 0 || H < 0 || W < 0 || C < 0) a.fail("negative size");
  if (x && (Cx <= 0 || (4 * C) % Cx)) a.fail("4·C must be a multiple of the shortcut's channels");
  a.need(out, B * 4 * H * W * C, dt, "out");
  a.need(y, B * (H + 1) * (W + 1) * 4 * C, dt, "y");
  a.need(x, B * H * W * Cx, dt, "x");
  return a.finish(a.be() ? a.be()->upsample_phases_nhwc : nullptr, [&](auto fn) { return fn(out.ptr(), y.ptr(), x.ptr(), B, H, W, C, Cx, dt); });
}
OP(Rmsnorm) {
  Args a(info, "rmsnorm");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", true), b = a.tensor("bias", true);
  const int64_t rows = a.i64("rows"), C = a.i64("C");
  const float eps = float(a.f64("eps")), offset = float(a.f64("offset"));
  const DType dt = a.dtype("dt");
  a.need(out, rows * C, dt, "out");
  a.need(x, rows * C, dt, "x");
  a.need(w, C, dt, "w");
  a.need(b, C, dt, "bias");
  return a.finish(a.be() ? a.be()->rmsnorm : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), w.ptr(), b.ptr(), rows, C, eps, offset, dt); });
}
OP(RmsnormAct) {
  Args a(info, "rmsnormAct");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", true), b = a.tensor("bias", true), res = a.tensor("res", true);
  const int64_t rows = a.i64("rows"), C = a.i64("C");
  const float eps = float(a.f64("eps"));
  const int64_t act = a.i64("act");
  const DType dt = a.dtype("dt");
  if (act < 0 || act > 2) a.fail("act must be 0 (none), 1 (silu) or 2 (relu)");
  a.need(out, rows * C, dt, "out");
  a.need(x, rows * C, dt, "x");
  a.need(w, C, dt, "w");
  a.need(b, C, dt, "bias");
  a.need(res, rows * C, dt, "res");
  return a.finish(a.be() ? a.be()->rmsnorm_act : nullptr,
                  [&](auto fn) { return fn(out.ptr(), x.ptr(), w.ptr(), b.ptr(), res.ptr(), rows, C, eps, ConvAct(act), dt); });
}
OP(Rmsnorm2d) {
  Args a(info, "rmsnorm2d");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", true), b = a.tensor("bias", true);
  const int64_t B = a.i64("B"), C = a.i64("C"), HW = a.i64("HW");
  const float eps = float(a.f64("eps"));
  const DType dt = a.dtype("dt");
  a.need(out, B * C * HW, dt, "out");
  a.need(x, B * C * HW, dt, "x");
  a.need(w, C, dt, "w");
  a.need(b, C, dt, "bias");
  return a.finish(a.be() ? a.be()->rmsnorm2d : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), w.ptr(), b.ptr(), B, C, HW, eps, dt); });
}
OP(Layernorm) {
  Args a(info, "layernorm");
  auto out = a.tensor("out"), x = a.tensor("x"), w = a.tensor("w", true), b = a.tensor("bias", true);
  const int64_t rows = a.i64("rows"), C = a.i64("C");
  const float eps = float(a.f64("eps"));
  const DType dt = a.dtype("dt");
  a.need(out, rows * C, dt, "out");
  a.need(x, rows * C, dt, "x");
  a.need(w, C, dt, "w");
  a.need(b, C, dt, "bias");
  return a.finish(a.be() ? a.be()->layernorm : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), w.ptr(), b.ptr(), rows, C, eps, dt); });
}
OP(LayernormModulate) {
  Args a(info, "layernormModulate");
  auto out = a.tensor("out"), x = a.tensor("x"), sh = a.tensor("shift"), sc = a.tensor("scale");
  const int64_t B = a.i64("B"), R = a.i64("R"), C = a.i64("C"), mbs = a.i64("mod_bstride");
  const float eps = float(a.f64("eps"));
  const DType dt = a.dtype("dt");
  if (mbs < 0) a.fail("negative mod_bstride");
  a.need(out, B * R * C, dt, "out");
  a.need(x, B * R * C, dt, "x");
  a.need(sh, B > 0 ? (B - 1) * mbs + C : 0, dt, "shift");
  a.need(sc, B > 0 ? (B - 1) * mbs + C : 0, dt, "scale");
  return a.finish(a.be() ? a.be()->layernorm_modulate : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), sh.ptr(), sc.ptr(), B, R, C, mbs, eps, dt); });
}
OP(Dwconv3x3GluTokens) {
  Args a(info, "dwconv3x3GluTokens");
  auto out = a.tensor("out"), u = a.tensor("u"), w = a.tensor("w"), bias = a.tensor("bias", true);
  const int64_t B = a.i64("B"), H = a.i64("H"), W = a.i64("W"), F = a.i64("F");
  const bool pre_silu = a.flag("pre_silu");
  const DType dt = a.dtype("dt");
  if (B < 0 || H < 0 || W < 0 || F < 0) a.fail("negative size");
  a.need(out, B * H * W * F, dt, "out");
  a.need(u, B * H * W * 2 * F, dt, "u");
  a.need(w, 2 * F * 9, dt, "w");
  a.need(bias, 2 * F, DType::F32, "bias");
  Napi::Value r = a.finish(a.be() ? a.be()->dwconv3x3_glu_tokens : nullptr, [&](auto fn) {
    return fn(out.ptr(), u.ptr(), w.ptr(), static_cast<const float*>(bias.ptr()), B, H, W, F, pre_silu, dt, &w.s->wcache);
  });
  if (w) w.s->sync_cache_bytes();
  return r;
}
OP(LinearAttentionTokens) {
  Args a(info, "linearAttentionTokens");
  auto out = a.tensor("out"), qkv = a.tensor("qkv");
  const int64_t B = a.i64("B"), N = a.i64("N"), H = a.i64("H"), D = a.i64("D");
  const float eps = float(a.f64("eps"));
  const bool relu = a.flag("relu");
  const DType dt = a.dtype("dt");
  if (B < 0 || N < 0 || H < 0 || D < 0) a.fail("negative size");
  a.need(out, B * N * H * D, dt, "out");
  a.need(qkv, B * N * 3 * H * D, dt, "qkv");
  return a.finish(a.be() ? a.be()->linear_attention_tokens : nullptr, [&](auto fn) { return fn(out.ptr(), qkv.ptr(), B, N, H, D, eps, relu, dt); });
}
OP(Attention) {
  Args a(info, "attention");
  auto out = a.tensor("out"), q = a.tensor("q"), k = a.tensor("k"), v = a.tensor("v"), bias = a.tensor("bias", true);
  const int64_t B = a.i64("B"), Hq = a.i64("Hq"), Hkv = a.i64("Hkv"), Lq = a.i64("Lq"), Lk = a.i64("Lk"), D = a.i64("D"), Dv = a.i64("Dv");
  const int64_t sb = a.i64("bias_sb"), sh = a.i64("bias_sh"), sq = a.i64("bias_sq");
  const float scale = float(a.f64("scale")), softcap = float(a.f64("softcap"));
  const bool causal = a.flag("causal");
  const int64_t window = a.i64("window");
  const DType dt = a.dtype("dt");
  if (Hkv <= 0 || Hq % Hkv) a.fail("Hq must be a multiple of Hkv");
  if (sb < 0 || sh < 0 || sq < 0) a.fail("negative bias stride");
  a.need(out, B * Hq * Lq * Dv, dt, "out");
  a.need(q, B * Hq * Lq * D, dt, "q");
  a.need(k, B * Hkv * Lk * D, dt, "k");
  a.need(v, B * Hkv * Lk * Dv, dt, "v");
  if (bias && B > 0 && Hq > 0 && Lq > 0 && Lk > 0) a.need(bias, (B - 1) * sb + (Hq - 1) * sh + (Lq - 1) * sq + Lk, DType::F32, "bias");
  return a.finish(a.be() ? a.be()->attention : nullptr, [&](auto fn) {
    return fn(out.ptr(), q.ptr(), k.ptr(), v.ptr(), static_cast<const float*>(bias.ptr()), B, Hq, Hkv, Lq, Lk, D, Dv, sb, sh, sq, scale, softcap, causal,
              window, dt);
  });
}
OP(AttentionTokens) {
  Args a(info, "attentionTokens");
  auto out = a.tensor("out"), q = a.tensor("q"), kv = a.tensor("kv"), bias = a.tensor("bias", true);
  const int64_t B = a.i64("B"), H = a.i64("H"), Lq = a.i64("Lq"), Lk = a.i64("Lk"), D = a.i64("D");
  const float scale = float(a.f64("scale"));
  const DType dt = a.dtype("dt");
  if (B < 0 || H < 0 || Lq < 0 || Lk < 0 || D < 0) a.fail("negative size");
  a.need(out, B * Lq * H * D, dt, "out");
  a.need(q, B * Lq * H * D, dt, "q");
  a.need(kv, B * Lk * 2 * H * D, dt, "kv");
  a.need(bias, B * Lk, DType::F32, "bias");
  Napi::Value r = a.finish(a.be() ? a.be()->attention_tokens : nullptr, [&](auto fn) {
    return fn(out.ptr(), q.ptr(), kv.ptr(), static_cast<const float*>(bias.ptr()), B, H, Lq, Lk, D, scale, dt, &kv.s->wcache);
  });
  if (kv) kv.s->sync_cache_bytes();
  return r;
}
OP(SelfAttentionRope) {
  Args a(info, "selfAttentionRope");
  auto out = a.tensor("out"), qkv = a.tensor("qkv");
  const auto pos = a.i64s("positions"), mask = a.i64s("key_mask");
  const int64_t B = a.i64("B"), N = a.i64("N"), Hq = a.i64("Hq"), Hkv = a.i64("Hkv"), D = a.i64("D");
  const float theta = float(a.f64("theta")), scale = float(a.f64("scale")), softcap = float(a.f64("softcap"));
  const int64_t window = a.i64("window");
  const DType dt = a.dtype("dt");
  if (B < 0 || N < 0 || Hq < 0 || Hkv < 0 || D < 0) a.fail("negative size");
  if (Hkv <= 0 || Hq % Hkv) a.fail("Hq must be a multiple of Hkv");
  if (D % 2) a.fail("head dim must be even");
  if (int64_t(pos.size()) != N) a.fail("positions must have N entries");
  // An empty key_mask array means "no mask".
  if (!mask.empty() && int64_t(mask.size()) != B * N) a.fail("key_mask must have B·N entries (or none)");
  a.need(out, B * N * Hq * D, dt, "out");
  a.need(qkv, B * N * (Hq + 2 * Hkv) * D, dt, "qkv");
  return a.finish(a.be() ? a.be()->self_attention_rope : nullptr, [&](auto fn) {
    return fn(out.ptr(), qkv.ptr(), pos.data(), mask.empty() ? nullptr : mask.data(), B, N, Hq, Hkv, D, theta, scale, softcap, window, dt);
  });
}
OP(LinearAttention) {
  Args a(info, "linearAttention");
  auto out = a.tensor("out"), q = a.tensor("q"), k = a.tensor("k"), v = a.tensor("v");
  const int64_t B = a.i64("B"), H = a.i64("H"), N = a.i64("N"), D = a.i64("D");
  const float eps = float(a.f64("eps"));
  const bool relu = a.flag("relu");
  const int64_t n = B * H * N * D;
  a.need(out, n, DType::F32, "out");
  a.need(q, n, DType::F32, "q");
  a.need(k, n, DType::F32, "k");
  a.need(v, n, DType::F32, "v");
  return a.finish(a.be() ? a.be()->linear_attention : nullptr, [&](auto fn) {
    return fn(static_cast<float*>(out.ptr()), static_cast<const float*>(q.ptr()), static_cast<const float*>(k.ptr()), static_cast<const float*>(v.ptr()), B, H,
              N, D, eps, relu);
  });
}
OP(Rope) {
  Args a(info, "rope");
  auto out = a.tensor("out"), x = a.tensor("x");
  const auto pos = a.i64s("positions");
  const int64_t BH = a.i64("BH"), L = a.i64("L"), D = a.i64("D");
  const float theta = float(a.f64("theta"));
  const DType dt = a.dtype("dt");
  if (int64_t(pos.size()) != L) a.fail("positions must have L entries");
  if (D % 2) a.fail("head dim must be even");
  a.need(out, BH * L * D, dt, "out");
  a.need(x, BH * L * D, dt, "x");
  return a.finish(a.be() ? a.be()->rope : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), pos.data(), BH, L, D, theta, dt); });
}
OP(Embedding) {
  Args a(info, "embedding");
  auto out = a.tensor("out"), table = a.tensor("table"), ids = a.tensor("ids");
  const int64_t n = a.i64("n_ids"), V = a.i64("V"), D = a.i64("D");
  const DType dt = a.dtype("dt"), idt = a.dtype("ids_dt");
  if (idt != DType::I32 && idt != DType::I64) a.fail("ids must be i32 or i64");
  a.need(out, n * D, dt, "out");
  a.need(table, V * D, dt, "table");
  a.need(ids, n, idt, "ids");
  return a.finish(a.be() ? a.be()->embedding : nullptr, [&](auto fn) { return fn(out.ptr(), table.ptr(), ids.ptr(), n, V, D, dt, idt); });
}
OP(UpsampleNearest) {
  Args a(info, "upsampleNearest");
  auto out = a.tensor("out"), x = a.tensor("x");
  const int64_t BC = a.i64("BC"), H = a.i64("H"), W = a.i64("W"), f = a.i64("factor"), es = a.i64("elsize");
  if (f < 1) a.fail("factor must be >= 1");
  a.need_bytes(out, BC * H * W * f * f * es, "out");
  a.need_bytes(x, BC * H * W * es, "x");
  return a.finish(a.be() ? a.be()->upsample_nearest : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), BC, H, W, f, size_t(es)); });
}
OP(UpsampleBilinear) {
  Args a(info, "upsampleBilinear");
  auto out = a.tensor("out"), x = a.tensor("x");
  const int64_t BC = a.i64("BC"), H = a.i64("H"), W = a.i64("W"), Ho = a.i64("Ho"), Wo = a.i64("Wo");
  const DType dt = a.dtype("dt");
  if (H < 1 || W < 1 || Ho < 1 || Wo < 1) a.fail("sizes must be >= 1");
  a.need(out, BC * Ho * Wo, dt, "out");
  a.need(x, BC * H * W, dt, "x");
  return a.finish(a.be() ? a.be()->upsample_bilinear : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), BC, H, W, Ho, Wo, dt); });
}
OP(PixelShuffle) {
  Args a(info, "pixelShuffle");
  auto out = a.tensor("out"), x = a.tensor("x");
  const int64_t B = a.i64("B"), C = a.i64("C"), H = a.i64("H"), W = a.i64("W"), r = a.i64("r"), es = a.i64("elsize");
  if (r < 1) a.fail("r must be >= 1");
  a.need_bytes(out, B * C * H * W * r * r * es, "out");
  a.need_bytes(x, B * C * r * r * H * W * es, "x");
  return a.finish(a.be() ? a.be()->pixel_shuffle : nullptr, [&](auto fn) { return fn(out.ptr(), x.ptr(), B, C, H, W, r, size_t(es)); });
}

// Which table entry serves each public op name (native/api.ts OpName), and whether it takes floats only.
bool op_supported(const BackendOps* be, const std::string& op, DType dt) {
  const bool f = dtype_is_float(dt);
  bool ok;
  if (op == "cast") ok = be->cast;
  else if (op == "permute") ok = be->permute;
  else if (op == "concat") ok = be->concat;
  else if (op == "slice") ok = be->slice;
  else if (op == "indexSelect") ok = be->index_select;
  else if (op == "repeatInterleave") ok = be->repeat_interleave;
  else if (op == "add" || op == "sub" || op == "mul" || op == "div" || op == "gluMul" || op == "gluHalves") ok = be->binary && f;
  else if (op == "affine" || op == "gelu_tanh" || op == "silu" || op == "relu" || op == "tanh" || op == "clamp") ok = be->unary && f;
  else if (op == "modulate" || op == "addGated") ok = be->ternary && f;
  else if (op == "softmax") ok = be->softmax && f;
  else if (op == "linear") ok = be->linear && f;
  else if (op == "linearResidual") ok = be->linear_residual && f;
  else if (op == "matmul") ok = be->matmul && f;
  else if (op == "conv2d") ok = be->conv2d && f;
  else if (op == "conv2dNhwc") ok = be->conv2d_nhwc && f;
  else if (op == "upsamplePhasesNhwc") ok = be->upsample_phases_nhwc && f;
  else if (op == "rmsnorm") ok = be->rmsnorm && f;
  else if (op == "rmsnorm2d") ok = be->rmsnorm2d && f;
  else if (op == "rmsnormAct") ok = be->rmsnorm_act && f;
  else if (op == "layernorm") ok = be->layernorm && f;
  else if (op == "layernormModulate") ok = be->layernorm_modulate && f;
  else if (op == "dwconv3x3GluTokens") ok = be->dwconv3x3_glu_tokens && f;
  else if (op == "linearAttentionTokens") ok = be->linear_attention_tokens && f;
  else if (op == "attention") ok = be->attention && f;
  else if (op == "attentionTokens") ok = be->attention_tokens && f;
  else if (op == "selfAttentionRope") ok = be->self_attention_rope && f;
  else if (op == "linearAttention") ok = be->linear_attention && f;
  else if (op == "rope") ok = be->rope && f;
  else if (op == "embedding") ok = be->embedding && f;
  else if (op == "upsampleNearest") ok = be->upsample_nearest;
  else if (op == "upsampleBilinear") ok = be->upsample_bilinear && f;
  else if (op == "pixelShuffle") ok = be->pixel_shuffle;
  else return false;
  if (ok && be->supports_dtype) ok = be->supports_dtype(op.c_str(), dt);
  return ok;
}

void init_ops(Napi::Env env, Napi::Object exports) {
  auto ops = Napi::Object::New(env);
  ops.Set("fill", Napi::Function::New(env, Fill));
  ops.Set("cast", Napi::Function::New(env, Cast));
  ops.Set("permute", Napi::Function::New(env, Permute));
  ops.Set("concat", Napi::Function::New(env, Concat));
  ops.Set("slice", Napi::Function::New(env, Slice));
  ops.Set("indexSelect", Napi::Function::New(env, IndexSelect));
  ops.Set("repeatInterleave", Napi::Function::New(env, RepeatInterleave));
  ops.Set("unary", Napi::Function::New(env, Unary));
  ops.Set("binary", Napi::Function::New(env, Binary));
  ops.Set("ternary", Napi::Function::New(env, Ternary));
  ops.Set("softmax", Napi::Function::New(env, Softmax));
  ops.Set("linear", Napi::Function::New(env, Linear));
  ops.Set("linearResidual", Napi::Function::New(env, LinearResidual));
  ops.Set("matmul", Napi::Function::New(env, Matmul));
  ops.Set("conv2d", Napi::Function::New(env, Conv2d));
  ops.Set("conv2dNhwc", Napi::Function::New(env, Conv2dNhwc));
  ops.Set("upsamplePhasesNhwc", Napi::Function::New(env, UpsamplePhasesNhwc));
  ops.Set("rmsnorm", Napi::Function::New(env, Rmsnorm));
  ops.Set("rmsnorm2d", Napi::Function::New(env, Rmsnorm2d));
  ops.Set("rmsnormAct", Napi::Function::New(env, RmsnormAct));
  ops.Set("layernorm", Napi::Function::New(env, Layernorm));
  ops.Set("layernormModulate", Napi::Function::New(env, LayernormModulate));
  ops.Set("dwconv3x3GluTokens", Napi::Function::New(env, Dwconv3x3GluTokens));
  ops.Set("linearAttentionTokens", Napi::Function::New(env, LinearAttentionTokens));
  ops.Set("attention", Napi::Function::New(env, Attention));
  ops.Set("attentionTokens", Napi::Function::New(env, AttentionTokens));
  ops.Set("selfAttentionRope", Napi::Function::New(env, SelfAttentionRope));
  ops.Set("linearAttention", Napi::Function::New(env, LinearAttention));
  ops.Set("rope", Napi::Function::New(env, Rope));
  ops.Set("embedding", Napi::Function::New(env, Embedding));
  ops.Set("upsampleNearest", Napi::Function::New(env, UpsampleNearest));
  ops.Set("upsampleBilinear", Napi::Function::New(env, UpsampleBilinear));
  ops.Set("pixelShuffle", Napi::Function::New(env, PixelShuffle));
  exports.Set("ops", ops);
}

}  // namespace sana
