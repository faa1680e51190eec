// vlpkit native layer: shared declarations.
// The addon is deliberately thin: a tensor handle, a boxed call into libtorch's dispatcher
// (every ATen operator by name, with autograd), autograd entry points, RNG/thread control and
// c10d collectives. Models, objectives and training loops live in TypeScript.
#pragma once
#include <napi.h>
#include <torch/torch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/version.h>
#include <string>

// The libtorch the addon is compiled against: Debian's 1.13 (tested) or a PyTorch 2.x installation
// (LIBTORCH=auto; not compiled here). The few C++ APIs that changed between them are guarded with it.
#define VLP_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace vlp {

// Per-environment data: the addon can be loaded by the main thread and by worker threads at once,
// each with its own constructors.
struct AddonData {
  Napi::FunctionReference tensorCtor;
  Napi::FunctionReference generatorCtor;
};
inline AddonData& addonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Tensor handles (class NativeTensor, see tensor.cc): dispose() frees at once; GC is a backstop.
void initTensorClass(Napi::Env env, Napi::Object exports);

class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);
  at::Generator gen;
};

Napi::Value wrapTensor(Napi::Env env, at::Tensor t);   // undefined tensor -> null
at::Tensor& unwrapTensor(const Napi::Value& v, const char* what);
at::Tensor* findTensor(napi_env env, napi_value v);  // nullptr if v is not a live tensor handle
int64_t liveTensorCount();
c10::ScalarType toScalarType(const Napi::Value& v);

void initTensor(Napi::Env env, Napi::Object exports);
void initDispatch(Napi::Env env, Napi::Object exports);
void initAutograd(Napi::Env env, Napi::Object exports);
void initDist(Napi::Env env, Napi::Object exports);
void initPrecision(Napi::Env env, Napi::Object exports);

// Every entry point runs its body through guard(): libtorch errors become JS Errors carrying
// libtorch's message (an uncaught c10::Error would abort the whole process).
template <typename F>
Napi::Value guard(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace vlp
