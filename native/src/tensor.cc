// Tensor handles and the copies between JS buffers and tensors.
#include "vlp.h"
#include <atomic>
#include <cstring>

namespace vlp {

static thread_local at::Tensor g_pending;  // handed from wrapTensor() to the constructor (one per JS thread)
static std::atomic<int64_t> g_live{0};

Napi::Object TensorWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "NativeTensor", {
    InstanceMethod("dispose", &TensorWrap::Dispose),
    InstanceAccessor("disposed", &TensorWrap::IsDisposed, nullptr),
  });
  addonData(env).tensorCtor = Napi::Persistent(f);
  exports.Set("NativeTensor", f);
  return exports;
}

TensorWrap::TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
  tensor = std::move(g_pending);
  g_pending.reset();
  if (tensor.defined()) {
    g_live++;
    external_ = static_cast<int64_t>(tensor.numel() * tensor.element_size());
    if (external_ > 0) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_);
  }
}

void TensorWrap::release(Napi::Env env) {
  if (!tensor.defined()) return;
  tensor.reset();
  g_live--;
  if (external_ > 0) Napi::MemoryManagement::AdjustExternalMemory(env, -external_);
  external_ = 0;
}

TensorWrap::~TensorWrap() { release(Env()); }

Napi::Value TensorWrap::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value TensorWrap::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor.defined());
}

int64_t liveTensorCount() { return g_live; }

Napi::Value wrapTensor(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  g_pending = std::move(t);
  return addonData(env).tensorCtor.New({});
}

at::Tensor& unwrapTensor(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addonData(v.Env()).tensorCtor.Value())) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a tensor");
  }
  TensorWrap* w = TensorWrap::Unwrap(v.As<Napi::Object>());
  if (!w->tensor.defined()) {
    throw Napi::Error::New(v.Env(), std::string(what) + ": tensor was already disposed");
  }
  return w->tensor;
}

c10::ScalarType toScalarType(const Napi::Value& v) {
  int32_t s = v.As<Napi::Number>().Int32Value();
  if (s < 0 || s >= static_cast<int32_t>(c10::ScalarType::NumOptions)) {
    throw Napi::RangeError::New(v.Env(), "unknown dtype code " + std::to_string(s));
  }
  return static_cast<c10::ScalarType>(s);
}

static std::vector<int64_t> toShape(const Napi::Value& v) {
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> shape(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) shape[i] = a.Get(i).As<Napi::Number>().Int64Value();
  return shape;
}

// fromBuffer(view: ArrayBufferView, shape: number[], dtype: number, device: string)
static Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::TypedArray view = info[0].As<Napi::TypedArray>();
    auto shape = toShape(info[1]);
    auto dtype = toScalarType(info[2]);
    std::string device = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "cpu";
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    if (view.ByteLength() != nbytes) {
      throw Napi::RangeError::New(env, "fromBuffer: buffer has " + std::to_string(view.ByteLength()) +
                                           " bytes, shape and dtype need " + std::to_string(nbytes));
    }
    uint8_t* src = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    if (nbytes > 0) std::memcpy(t.data_ptr(), src, nbytes);
    if (device != "cpu") t = t.to(c10::Device(device));
    return wrapTensor(env, std::move(t));
  });
}

// toBuffer(t): a new ArrayBuffer with the tensor's elements, C-contiguous, copied to the CPU.
static Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor t = unwrapTensor(info[0], "toBuffer").detach();
    if (!t.device().is_cpu()) t = t.cpu();
    t = t.contiguous();
    size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, nbytes);
    if (nbytes > 0) std::memcpy(buf.Data(), t.data_ptr(), nbytes);
    return buf;
  });
}

// meta(t) -> [dtypeCode, shape, deviceString, requiresGrad]
static Napi::Value Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& t = unwrapTensor(info[0], "meta");
    Napi::Array out = Napi::Array::New(env, 4);
    out.Set(0u, Napi::Number::New(env, static_cast<int>(t.scalar_type())));
    Napi::Array shape = Napi::Array::New(env, t.dim());
    for (int64_t i = 0; i < t.dim(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, t.size(i)));
    out.Set(1u, shape);
    out.Set(2u, Napi::String::New(env, t.device().str()));
    out.Set(3u, Napi::Boolean::New(env, t.requires_grad()));
    return out;
  });
}

static Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& t = unwrapTensor(info[0], "item");
    c10::Scalar s = t.item();
    if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(env, static_cast<double>(s.toLong()));
    return Napi::Number::New(env, s.toDouble());
  });
}

static Napi::Value LiveTensors(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(liveTensorCount()));
}

// sameStorage(a, b): whether two tensors view the same memory (used by tests and the optimizer).
static Napi::Value SameStorage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    at::Tensor& a = unwrapTensor(info[0], "sameStorage");
    at::Tensor& b = unwrapTensor(info[1], "sameStorage");
    return Napi::Boolean::New(env, a.is_alias_of(b));
  });
}

void initTensor(Napi::Env env, Napi::Object exports) {
  exports.Set("fromBuffer", Napi::Function::New(env, FromBuffer));
  exports.Set("toBuffer", Napi::Function::New(env, ToBuffer));
  exports.Set("meta", Napi::Function::New(env, Meta));
  exports.Set("item", Napi::Function::New(env, Item));
  exports.Set("liveTensors", Napi::Function::New(env, LiveTensors));
  exports.Set("sameStorage", Napi::Function::New(env, SameStorage));
}

}  // namespace vlp
