// Mixed precision and BLAS introspection.
// Autocast: libtorch's own (at::autocast), the same thread-local state torch.autocast sets. The
// boxed dispatcher calls of dispatch.cc compute their dispatch keys from the tensors and this
// thread-local state, so ops called through them run through the AutocastCPU/AutocastCUDA kernels
// exactly as in PyTorch. The state is per thread: set it on the thread that runs the ops.
#include "vlp.h"
#include <ATen/autocast_mode.h>
#include <dlfcn.h>

namespace vlp {

static bool isCuda(const Napi::Value& v) {
  std::string d = v.ToString().Utf8Value();
  if (d == "cpu") return false;
  if (d.rfind("cuda", 0) == 0) return true;
  throw Napi::TypeError::New(v.Env(), "autocast: device must be \"cpu\" or \"cuda\", got " + d);
}

#if VLP_TORCH_AT_LEAST(2, 4)
// PyTorch 2.4 keyed the autocast state by device type and deprecated the per-device functions below
// (a warning on every call; later removed).
static at::DeviceType autocastDevice(bool cuda) { return cuda ? at::kCUDA : at::kCPU; }
static bool autocastEnabled(bool cuda) { return at::autocast::is_autocast_enabled(autocastDevice(cuda)); }
static at::ScalarType autocastDtype(bool cuda) { return at::autocast::get_autocast_dtype(autocastDevice(cuda)); }
static void setAutocastState(bool cuda, bool on, at::ScalarType dt) {
  at::autocast::set_autocast_dtype(autocastDevice(cuda), dt);
  at::autocast::set_autocast_enabled(autocastDevice(cuda), on);
}
#else
static bool autocastEnabled(bool cuda) { return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
static at::ScalarType autocastDtype(bool cuda) { return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype(); }
static void setAutocastState(bool cuda, bool on, at::ScalarType dt) {
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dt);
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_autocast_cpu_dtype(dt);
    at::autocast::set_cpu_enabled(on);
  }
}
#endif

// autocastState(device) -> [enabled, dtypeCode]
static Napi::Value AutocastState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    bool cuda = isCuda(info[0]);
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Boolean::New(env, autocastEnabled(cuda)));
    out.Set(1u, Napi::Number::New(env, static_cast<int>(autocastDtype(cuda))));
    return out;
  });
}

// setAutocast(device, enabled, dtypeCode)
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    bool cuda = isCuda(info[0]);
    bool on = info[1].ToBoolean().Value();
    auto dt = toScalarType(info[2]);
    setAutocastState(cuda, on, dt);
    return env.Undefined();
  });
}

static Napi::Value IncrementNesting(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::autocast::increment_nesting());
}

// Decrements the nesting level; leaving the outermost scope clears the cache of casted weights, as torch.autocast's __exit__ does.
static Napi::Value DecrementNesting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    int level = at::autocast::decrement_nesting();
    if (level == 0) at::autocast::clear_cache();
    return Napi::Number::New(env, level);
  });
}

// The core type of the OpenBLAS loaded into this process (openblas_get_corename), or null when libblas is not OpenBLAS.
static Napi::Value BlasCorename(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (fn == nullptr) return env.Null();
  const char* name = fn();
  return name ? Napi::String::New(env, name) : env.Null();
}

void initPrecision(Napi::Env env, Napi::Object exports) {
  exports.Set("autocastState", Napi::Function::New(env, AutocastState));
  exports.Set("setAutocast", Napi::Function::New(env, SetAutocast));
  exports.Set("autocastIncrementNesting", Napi::Function::New(env, IncrementNesting));
  exports.Set("autocastDecrementNesting", Napi::Function::New(env, DecrementNesting));
  exports.Set("blasCorename", Napi::Function::New(env, BlasCorename));
}

}  // namespace vlp
