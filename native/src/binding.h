// The N-API side shared by addon.cc and ops_binding.cc: the Storage object (one device buffer,
// its backend, its weight cache) and the argument reader that checks every tensor argument
// against its storage's size before any kernel runs.
#pragma once
#include <napi.h>
#include <atomic>
#include <string>
#include <vector>
#include "backend.h"
#include "cpuinfo.h"

namespace sana {

struct AddonData {
  Napi::FunctionReference storage_ctor;
  Napi::FunctionReference mapped_ctor;
};

// Allocated/peak bytes per registered backend (all threads and contexts of the process).
struct MemCounter {
  std::atomic<int64_t> allocated{0}, peak{0};
};
MemCounter& mem_counter(const BackendOps* be);

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Storage(const Napi::CallbackInfo& info);
  ~Storage() override { release(); }
  // Allocates on `be`; returns an empty object and throws when out of memory.
  static Napi::Object Create(Napi::Env env, const BackendOps* be, size_t nbytes);
  void release();

  const BackendOps* be = nullptr;
  void* ptr = nullptr;
  size_t nbytes = 0;
  bool freed = false;
  // The data was freed after a packed copy took its place (releaseSource): `ptr` is kept only as
  // the weight's identity for its cache and is never read; only linear may still take it.
  bool source_released = false;
  WeightCacheSlot wcache;
  size_t wcache_bytes = 0;  // bytes of wcache already added to the backend's counter
  // Re-counts the weight cache after an op that may have filled it.
  void sync_cache_bytes();

 private:
  Napi::Value Free(const Napi::CallbackInfo& info);
  Napi::Value ReleaseSource(const Napi::CallbackInfo& info);
  Napi::Value GetReleased(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), source_released); }
  Napi::Value GetNbytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(nbytes)); }
  Napi::Value GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), be ? be->name : "?"); }
  Napi::Value GetFreed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), freed); }
};

// A tensor argument: storage + byte offset (storage null for an absent optional tensor).
struct TRef {
  Storage* s = nullptr;
  size_t off = 0;
  void* ptr() const { return s ? static_cast<char*>(s->ptr) + off : nullptr; }
  explicit operator bool() const { return s != nullptr; }
};

// Reads positional arguments; the first problem is kept and thrown by `finish`.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op) {}
  // `packed_ok`: the op accepts a weight whose data was released after packing (linear's w).
  TRef tensor(const char* name, bool optional = false, bool packed_ok = false);
  int64_t i64(const char* name);
  double f64(const char* name);
  bool flag(const char* name);
  DType dtype(const char* name);
  std::vector<int64_t> i64s(const char* name);
  Napi::Value raw() { return info_[i_++]; }
  // Checks that `t` holds `elems` elements of `dt` after its offset, on this call's backend.
  void need(const TRef& t, int64_t elems, DType dt, const char* name);
  void need_bytes(const TRef& t, int64_t bytes, const char* name);
  void fail(const std::string& msg) {
    if (err_.empty()) err_ = std::string(op_) + ": " + msg;
  }
  bool ok() const { return err_.empty(); }
  const BackendOps* be() const { return be_; }
  const char* op() const { return op_; }
  Napi::Env env() const { return info_.Env(); }
  // Throws the recorded error, or calls `call` (which returns a Status) and throws on failure.
  template <typename Fn, typename Call>
  Napi::Value finish(Fn fn, Call call) {
    Napi::Env env = info_.Env();
    if (ok() && !be_) fail("no output tensor");
    if (ok() && !fn) fail(std::string("not supported by the '") + be_->name + "' backend");
    if (!ok()) {
      Napi::Error::New(env, err_).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Status st = nullptr;
    std::string ex;
    apply_thread_setting();
    try {
      st = call(fn);
    } catch (const std::exception& e) { ex = e.what(); }
    if (!ex.empty()) {
      Napi::Error::New(env, std::string(op_) + ": " + ex).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (st) {
      Napi::Error::New(env, std::string(op_) + ": " + st).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return env.Undefined();
  }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
  size_t i_ = 0;
  std::string err_;
  const BackendOps* be_ = nullptr;
};

void init_ops(Napi::Env env, Napi::Object exports);
bool op_supported(const BackendOps* be, const std::string& op, DType dt);

}  // namespace sana
