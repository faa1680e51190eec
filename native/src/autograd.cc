// Autograd entry points, grad mode, random generators and thread control.
#include "vlp.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#ifdef VLP_WITH_CUDA
#include <torch/cuda.h>
#endif

namespace vlp {

Napi::Object GeneratorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NativeGenerator", {});
  addonData(env).generatorCtor = Napi::Persistent(f);
  exports.Set("NativeGenerator", f);
  return exports;
}

// new NativeGenerator(seed): an independent CPU generator (for seeded masking, shuffles, init).
GeneratorWrap::GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
  uint64_t seed = info.Length() > 0 && info[0].IsNumber() ? static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()) : 0;
  gen = at::detail::createCPUGenerator(seed);
}

// A NativeGenerator, a device string (that device's default generator: "cuda:0" is the one dropout
// uses on that GPU), or anything else for libtorch's default CPU generator.
static at::Generator generatorArg(const Napi::Value& v) {
  if (v.IsObject() && v.As<Napi::Object>().InstanceOf(addonData(v.Env()).generatorCtor.Value())) {
    return GeneratorWrap::Unwrap(v.As<Napi::Object>())->gen;
  }
  if (v.IsString()) return at::globalContext().defaultGenerator(c10::Device(v.As<Napi::String>().Utf8Value()));
  return at::detail::getDefaultCPUGenerator();
}

// backward(tensors, grads|null, retainGraph, createGraph)
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Array ts = info[0].As<Napi::Array>();
    std::vector<at::Tensor> roots, grads;
    for (uint32_t i = 0; i < ts.Length(); i++) roots.push_back(unwrapTensor(ts.Get(i), "backward"));
    if (info[1].IsArray()) {
      Napi::Array gs = info[1].As<Napi::Array>();
      for (uint32_t i = 0; i < gs.Length(); i++) grads.push_back(unwrapTensor(gs.Get(i), "backward grad"));
    }
    bool retain = info[2].ToBoolean().Value();
    bool create = info[3].ToBoolean().Value();
    torch::autograd::backward(roots, grads, retain, create);
    return env.Undefined();
  });
}

static Napi::Value Grad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value { return wrapTensor(env, unwrapTensor(info[0], "grad").grad()); });
}

static Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& t = unwrapTensor(info[0], "setGrad");
    if (info[1].IsNull() || info[1].IsUndefined()) t.mutable_grad().reset();
    else t.mutable_grad() = unwrapTensor(info[1], "setGrad");
    return env.Undefined();
  });
}

static Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    unwrapTensor(info[0], "requiresGrad_").set_requires_grad(info[1].ToBoolean().Value());
    return env.Undefined();
  });
}

// setData(t, src): replace t's data keeping its identity and autograd leaf status (param.data = src).
static Napi::Value SetData(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    unwrapTensor(info[0], "setData").set_data(unwrapTensor(info[1], "setData"));
    return env.Undefined();
  });
}

static Napi::Value IsLeaf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value { return Napi::Boolean::New(env, unwrapTensor(info[0], "isLeaf").is_leaf()); });
}

static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  c10::GradMode::set_enabled(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), c10::GradMode::is_enabled());
}

static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1) throw Napi::RangeError::New(info.Env(), "setNumThreads: need at least 1 thread");
  at::set_num_threads(n);
  return info.Env().Undefined();
}

static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
    if (info.Length() > 1 && (info[1].IsObject() || info[1].IsString())) {
      at::Generator g = generatorArg(info[1]);
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_current_seed(seed);
    } else {
      torch::manual_seed(seed);
    }
    return env.Undefined();
  });
}

// getRngState(gen?) -> uint8 tensor; setRngState(state, gen?): exact resume of random streams.
// gen: a NativeGenerator or a device string (see generatorArg).
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Generator g = generatorArg(info.Length() > 0 ? info[0] : env.Undefined());
    std::lock_guard<std::mutex> lock(g.mutex());
    return wrapTensor(env, g.get_state());
  });
}

static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& state = unwrapTensor(info[0], "setRngState");
    at::Generator g = generatorArg(info.Length() > 1 ? info[1] : env.Undefined());
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state);
    return env.Undefined();
  });
}

static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
#ifdef VLP_WITH_CUDA
  o.Set("cuda", Napi::Boolean::New(env, true));
  o.Set("cudaAvailable", Napi::Boolean::New(env, torch::cuda::is_available()));
  o.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(torch::cuda::device_count())));
#else
  o.Set("cuda", Napi::Boolean::New(env, false));
  o.Set("cudaAvailable", Napi::Boolean::New(env, false));
  o.Set("cudaDeviceCount", Napi::Number::New(env, 0));
#endif
  o.Set("parallelInfo", Napi::String::New(env, at::get_parallel_info()));
  return o;
}

void initAutograd(Napi::Env env, Napi::Object exports) {
  exports.Set("backward", Napi::Function::New(env, Backward));
  exports.Set("grad", Napi::Function::New(env, Grad));
  exports.Set("setGrad", Napi::Function::New(env, SetGrad));
  exports.Set("setRequiresGrad", Napi::Function::New(env, SetRequiresGrad));
  exports.Set("setData", Napi::Function::New(env, SetData));
  exports.Set("isLeaf", Napi::Function::New(env, IsLeaf));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed));
  exports.Set("getRngState", Napi::Function::New(env, GetRngState));
  exports.Set("setRngState", Napi::Function::New(env, SetRngState));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
}

}  // namespace vlp
