// Module entry: storages (alloc/free/read/write/copy), memory counters, memory-mapped files,
// backend listing and build facts. The addon is context-aware: per-environment state lives in
// AddonData (instance data), process-wide state (backends, counters) is thread-safe.
#include "binding.h"
#include "host_cache.h"
#include "cpuinfo.h"
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace sana {

#define SANA_THROW(env, msg)                                 \
  do {                                                       \
    Napi::Error::New(env, msg).ThrowAsJavaScriptException(); \
    return (env).Undefined();                                \
  } while (0)

MemCounter& mem_counter(const BackendOps* be) {
  static MemCounter counters[8];
  for (int i = 0; i < backend_count(); i++)
    if (backend_at(i) == be) return counters[i];
  return counters[7];
}

// Adds delta bytes to the backend's counter and raises its peak.
static void count_alloc(const BackendOps* be, int64_t delta) {
  auto& mc = mem_counter(be);
  const int64_t now = mc.allocated.fetch_add(delta) + delta;
  int64_t peak = mc.peak.load();
  while (now > peak && !mc.peak.compare_exchange_weak(peak, now)) {}
}

// --- Storage -----------------------------------------------------------------------------------

Napi::Function Storage::Define(Napi::Env env) {
  return DefineClass(env, "Storage",
                     {
                         InstanceMethod("free", &Storage::Free),
                         InstanceMethod("releaseSource", &Storage::ReleaseSource),
                         InstanceAccessor("released", &Storage::GetReleased, nullptr),
                         InstanceAccessor("nbytes", &Storage::GetNbytes, nullptr),
                         InstanceAccessor("device", &Storage::GetDevice, nullptr),
                         InstanceAccessor("freed", &Storage::GetFreed, nullptr),
                     });
}
Storage::Storage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Storage>(info) {}

Napi::Object Storage::Create(Napi::Env env, const BackendOps* be, size_t nbytes) {
  auto* data = env.GetInstanceData<AddonData>();
  Napi::Object obj = data->storage_ctor.New({});
  Storage* s = Storage::Unwrap(obj);
  s->be = be;
  s->ptr = be->alloc(nbytes);
  if (!s->ptr) {
    s->freed = true;
    Napi::Error::New(env, std::string("out of memory on '") + be->name + "': could not allocate " + std::to_string(nbytes) + " bytes")
        .ThrowAsJavaScriptException();
    return Napi::Object();
  }
  s->nbytes = nbytes;
  count_alloc(be, int64_t(nbytes));
  return obj;
}

void Storage::sync_cache_bytes() {
  const size_t now = wcache ? wcache->bytes() : 0;
  if (now != wcache_bytes) count_alloc(be, int64_t(now) - int64_t(wcache_bytes));
  wcache_bytes = now;
}

void Storage::release() {
  if (!ptr) return;
  wcache.reset();
  if (wcache_bytes) count_alloc(be, -int64_t(wcache_bytes));
  wcache_bytes = 0;
  if (!source_released) {
    be->free(ptr);
    mem_counter(be).allocated.fetch_sub(int64_t(nbytes));
  }
  ptr = nullptr;
  freed = true;
}

Napi::Value Storage::ReleaseSource(const Napi::CallbackInfo& info) {
  // Only when the weight cache holds a packed copy that serves every later call.
  if (!ptr || freed || source_released || !wcache || !wcache->drop_source()) return Napi::Boolean::New(info.Env(), false);
  be->free(ptr);
  mem_counter(be).allocated.fetch_sub(int64_t(nbytes));
  source_released = true;
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value Storage::Free(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

// --- helpers -----------------------------------------------------------------------------------

static const BackendOps* backend_arg(const Napi::CallbackInfo& info, size_t i, std::string& err) {
  if (!info[i].IsString()) {
    err = "device must be a string";
    return nullptr;
  }
  const std::string name = info[i].As<Napi::String>();
  const BackendOps* be = find_backend(name.c_str());
  if (!be) {
    err = "device '" + name + "' is not compiled into this build";
    return nullptr;
  }
  const char* why = be->unavailable_reason();
  if (why && *why) {
    err = "device '" + name + "' is unavailable: " + why;
    return nullptr;
  }
  return be;
}
static bool dtype_of(const Napi::Value& v, DType& dt) {
  if (!v.IsNumber()) return false;
  const int32_t d = v.As<Napi::Number>().Int32Value();
  if (d < 0 || d > 4) return false;
  dt = DType(d);
  return true;
}

// alloc(device, nbytes) -> Storage
static Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err;
  const BackendOps* be = backend_arg(info, 0, err);
  if (!be) SANA_THROW(env, "alloc: " + err);
  if (!info[1].IsNumber() || info[1].As<Napi::Number>().DoubleValue() < 0) SANA_THROW(env, "alloc: nbytes must be a non-negative number");
  Napi::Object obj = Storage::Create(env, be, size_t(info[1].As<Napi::Number>().Int64Value()));
  if (obj.IsEmpty()) return env.Undefined();
  return obj;
}

static Storage* storage_arg(const Napi::CallbackInfo& info, size_t i, const char* what, std::string& err) {
  if (!info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(info.Env().GetInstanceData<AddonData>()->storage_ctor.Value())) {
    err = std::string(what) + " is not a native storage";
    return nullptr;
  }
  Storage* s = Storage::Unwrap(info[i].As<Napi::Object>());
  if (s->freed) {
    err = std::string(what) + " was disposed";
    return nullptr;
  }
  if (s->source_released) {
    err = std::string(what) + " had its data released after packing (it can only be a linear weight now)";
    return nullptr;
  }
  return s;
}

// write(storage, byteOffset, typedArray, srcDtype, dstDtype, count): converts host data into the storage.
static Napi::Value Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err;
  Storage* s = storage_arg(info, 0, "write: target", err);
  if (!s) SANA_THROW(env, err);
  DType sdt, ddt;
  if (!info[2].IsTypedArray() || !dtype_of(info[3], sdt) || !dtype_of(info[4], ddt) || !info[1].IsNumber() || !info[5].IsNumber())
    SANA_THROW(env, "write: expected (storage, byteOffset, typedArray, srcDtype, dstDtype, count)");
  auto ta = info[2].As<Napi::TypedArray>();
  const int64_t off = info[1].As<Napi::Number>().Int64Value(), n = info[5].As<Napi::Number>().Int64Value();
  if (off < 0 || n < 0 || size_t(n) * dtype_size(sdt) > ta.ByteLength() || size_t(off) + size_t(n) * dtype_size(ddt) > s->nbytes)
    SANA_THROW(env, "write: " + std::to_string(n) + " elements do not fit the source array or the target storage");
  const void* src = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  char* dst = static_cast<char*>(s->ptr) + off;
  if (s->be->host_accessible) {
    cast_cpu(dst, src, n, ddt, sdt);
    return env.Undefined();
  }
  std::vector<char> tmp(size_t(n) * dtype_size(ddt));
  cast_cpu(tmp.data(), src, n, ddt, sdt);
  if (Status st = s->be->upload(dst, tmp.data(), tmp.size())) SANA_THROW(env, std::string("write: ") + st);
  return env.Undefined();
}

// read(storage, byteOffset, count, srcDtype, dstDtype) -> ArrayBuffer of count dstDtype values.
static Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err;
  Storage* s = storage_arg(info, 0, "read: source", err);
  if (!s) SANA_THROW(env, err);
  DType sdt, ddt;
  if (!info[1].IsNumber() || !info[2].IsNumber() || !dtype_of(info[3], sdt) || !dtype_of(info[4], ddt))
    SANA_THROW(env, "read: expected (storage, byteOffset, count, srcDtype, dstDtype)");
  const int64_t off = info[1].As<Napi::Number>().Int64Value(), n = info[2].As<Napi::Number>().Int64Value();
  if (off < 0 || n < 0 || size_t(off) + size_t(n) * dtype_size(sdt) > s->nbytes)
    SANA_THROW(env, "read: " + std::to_string(n) + " elements at byte " + std::to_string(off) + " exceed the storage");
  auto ab = Napi::ArrayBuffer::New(env, size_t(n) * dtype_size(ddt));
  const char* src = static_cast<const char*>(s->ptr) + off;
  if (s->be->host_accessible) {
    cast_cpu(ab.Data(), src, n, ddt, sdt);
    return ab;
  }
  std::vector<char> tmp(size_t(n) * dtype_size(sdt));
  if (Status st = s->be->download(tmp.data(), src, tmp.size())) SANA_THROW(env, std::string("read: ") + st);
  cast_cpu(ab.Data(), tmp.data(), n, ddt, sdt);
  return ab;
}

// copy(dst, dstOffset, src, srcOffset, nbytes): same device directly, else through the host.
static Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err;
  Storage* d = storage_arg(info, 0, "copy: target", err);
  if (!d) SANA_THROW(env, err);
  Storage* s = storage_arg(info, 2, "copy: source", err);
  if (!s) SANA_THROW(env, err);
  const int64_t doff = info[1].As<Napi::Number>().Int64Value(), soff = info[3].As<Napi::Number>().Int64Value();
  const int64_t n = info[4].As<Napi::Number>().Int64Value();
  if (doff < 0 || soff < 0 || n < 0 || size_t(doff + n) > d->nbytes || size_t(soff + n) > s->nbytes) SANA_THROW(env, "copy: byte range exceeds a storage");
  char* dp = static_cast<char*>(d->ptr) + doff;
  const char* sp = static_cast<const char*>(s->ptr) + soff;
  Status st = nullptr;
  if (d->be == s->be) st = d->be->copy(dp, sp, size_t(n));
  else if (s->be->host_accessible) st = d->be->upload(dp, sp, size_t(n));
  else if (d->be->host_accessible) st = s->be->download(dp, sp, size_t(n));
  else {
    std::vector<char> tmp(static_cast<size_t>(n));
    st = s->be->download(tmp.data(), sp, size_t(n));
    if (!st) st = d->be->upload(dp, tmp.data(), size_t(n));
  }
  if (st) SANA_THROW(env, std::string("copy: ") + st);
  return env.Undefined();
}

static Napi::Value Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string err;
  if (!info[0].IsString()) SANA_THROW(env, "memory: device must be a string");
  const BackendOps* be = find_backend(std::string(info[0].As<Napi::String>()).c_str());
  if (!be) SANA_THROW(env, "memory: unknown device");
  auto& mc = mem_counter(be);
  if (info.Length() > 1 && info[1].ToBoolean()) mc.peak.store(mc.allocated.load());
  auto o = Napi::Object::New(env);
  o.Set("allocated", double(mc.allocated.load()));
  o.Set("peak", double(mc.peak.load()));
  // Freed CPU blocks kept for reuse (host_cache.cc): resident, but not tensors.
  if (std::string(be->name) == "cpu") o.Set("cached", double(host_cache_bytes()));
  return o;
}

// trimHostCache() -> bytes given back to the system (POST /free, model unloads).
static Napi::Value TrimHostCache(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(host_cache_trim())); }

static Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto arr = Napi::Array::New(env);
  for (int i = 0; i < backend_count(); i++) {
    const BackendOps* be = backend_at(i);
    const char* why = be->unavailable_reason();
    auto o = Napi::Object::New(env);
    o.Set("name", be->name);
    o.Set("available", !(why && *why));
    if (why && *why) o.Set("reason", why);
    o.Set("info", be->info_json());
    arr.Set(uint32_t(i), o);
  }
  return arr;
}

static Napi::Value SupportsOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DType dt;
  if (!info[0].IsString() || !info[1].IsString() || !dtype_of(info[2], dt)) SANA_THROW(env, "supportsOp: expected (device, op, dtype)");
  const BackendOps* be = find_backend(std::string(info[0].As<Napi::String>()).c_str());
  return Napi::Boolean::New(env, be && op_supported(be, info[1].As<Napi::String>(), dt));
}

static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  o.Set("onednn", onednn_linked());
  o.Set("cuda", find_backend("cuda") != nullptr);
  o.Set("isa", cpu_isa_name());
  o.Set("gemm", gemm_path_name());
  o.Set("bf16Dot", cpu_bf16_dot());
  if (!onednn_linked())
    o.Set("hint",
          "built without oneDNN: CPU matmul/conv use the portable kernels; apt-get install libdnnl-dev and rebuild (npm run build:native) for the fast path");
  return o;
}

static Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  const double ms = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 200.0;
  apply_thread_setting();
  return Napi::Number::New(info.Env(), fma_peak_gflops(std::max(10.0, std::min(ms, 5000.0))));
}

static Napi::Value Threads(const Napi::CallbackInfo& info) {
#ifdef _OPENMP
  if (info[0].IsNumber()) set_thread_setting(std::max(1, info[0].As<Napi::Number>().Int32Value()));
  apply_thread_setting();
  return Napi::Number::New(info.Env(), omp_get_max_threads());
#else
  return Napi::Number::New(info.Env(), 1);
#endif
}

// --- memory-mapped files -------------------------------------------------------------------------

class Mapped : public Napi::ObjectWrap<Mapped> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Mapped",
                       {
                           InstanceMethod("bytes", &Mapped::Bytes),
                           InstanceMethod("load", &Mapped::Load),
                           InstanceMethod("close", &Mapped::Close),
                           InstanceAccessor("size", &Mapped::GetSize, nullptr),
                       });
  }
  explicit Mapped(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Mapped>(info) {}
  ~Mapped() override { unmap(); }
  void unmap() {
    if (base && size) munmap(base, size);
    base = nullptr;
  }
  void* base = nullptr;
  size_t size = 0;
  std::string path;

 private:
  Napi::Value GetSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(size)); }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    unmap();
    closed = true;
    return info.Env().Undefined();
  }
  // bytes(offset, length) -> Buffer (a copy)
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed) SANA_THROW(env, path + ": file was closed");
    const int64_t off = info[0].As<Napi::Number>().Int64Value(), len = info[1].As<Napi::Number>().Int64Value();
    if (off < 0 || len < 0 || uint64_t(off) + uint64_t(len) > size) SANA_THROW(env, path + ": byte range past the end of the file");
    return Napi::Buffer<char>::Copy(env, static_cast<const char*>(base) + off, size_t(len));
  }
  // load(device, byteOffset, count, srcDtype, dstDtype) -> Storage
  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed) SANA_THROW(env, path + ": file was closed");
    std::string err;
    const BackendOps* be = backend_arg(info, 0, err);
    if (!be) SANA_THROW(env, path + ": " + err);
    DType sdt, ddt;
    if (!info[1].IsNumber() || !info[2].IsNumber() || !dtype_of(info[3], sdt) || !dtype_of(info[4], ddt))
      SANA_THROW(env, "load: expected (device, byteOffset, count, srcDtype, dstDtype)");
    const int64_t off = info[1].As<Napi::Number>().Int64Value(), n = info[2].As<Napi::Number>().Int64Value();
    if (off < 0 || n < 0 || uint64_t(off) + uint64_t(n) * dtype_size(sdt) > size) SANA_THROW(env, path + ": tensor data past the end of the file");
    Napi::Object obj = Storage::Create(env, be, size_t(n) * dtype_size(ddt));
    if (obj.IsEmpty()) return env.Undefined();
    Storage* s = Storage::Unwrap(obj);
    const char* src = static_cast<const char*>(base) + off;
    if (be->host_accessible) {
      cast_cpu(s->ptr, src, n, ddt, sdt);
    } else {
      std::vector<char> tmp(s->nbytes);
      cast_cpu(tmp.data(), src, n, ddt, sdt);
      if (Status st = be->upload(s->ptr, tmp.data(), tmp.size())) {
        s->release();
        SANA_THROW(env, path + ": upload failed: " + st);
      }
    }
    return obj;
  }
  bool closed = false;
};

// openMapped(path) -> Mapped
static Napi::Value OpenMapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) SANA_THROW(env, "openMapped: path must be a string");
  const std::string path = info[0].As<Napi::String>();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) SANA_THROW(env, path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    SANA_THROW(env, path + ": not a regular file");
  }
  void* base = nullptr;
  if (st.st_size > 0) {
    base = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      SANA_THROW(env, path + ": mmap failed: " + std::strerror(e));
    }
  }
  ::close(fd);
  Napi::Object obj = env.GetInstanceData<AddonData>()->mapped_ctor.New({});
  Mapped* m = Mapped::Unwrap(obj);
  m->base = base;
  m->size = size_t(st.st_size);
  m->path = path;
  return obj;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->storage_ctor = Napi::Persistent(Storage::Define(env));
  data->mapped_ctor = Napi::Persistent(Mapped::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("alloc", Napi::Function::New(env, Alloc));
  exports.Set("write", Napi::Function::New(env, Write));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("copy", Napi::Function::New(env, Copy));
  exports.Set("memory", Napi::Function::New(env, Memory));
  exports.Set("trimHostCache", Napi::Function::New(env, TrimHostCache));
  exports.Set("backends", Napi::Function::New(env, Backends));
  exports.Set("supportsOp", Napi::Function::New(env, SupportsOp));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("threads", Napi::Function::New(env, Threads));
  exports.Set("openMapped", Napi::Function::New(env, OpenMapped));
  init_ops(env, exports);
  return exports;
}

}  // namespace sana

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return sana::Init(env, exports); }
NODE_API_MODULE(sana_native, InitModule)
