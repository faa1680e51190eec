// Tensor handles and the copies between JS buffers and tensors.
#include "vlp.h"
#include <atomic>
#include <cstring>

namespace vlp {

// A tensor handle is a JS object of class NativeTensor wrapping a heap TensorBox through raw
// Node-API. dispose() frees the at::Tensor AND removes the wrap, deleting the box and Node's wrap
// reference at once. (With a finalizer-only design, as node-addon-api's ObjectWrap, the small native
// objects of disposed handles lived until Node-API's deferred finalizers ran, which never happens
// inside a synchronous loop: they accumulated and pinned glibc's freed tensor blocks, so RSS grew by
// every tensor ever allocated.) GC finalization remains the backstop for handles never disposed.
//
// V8 is told of the tensors' bytes (so that leaked handles holding large tensors still get
// collected), but only in steps of kExternalQuantum. Reporting every tensor made each training step's
// activations, allocated and disposed within the step, look like memory pressure: V8 ran a full
// mark-compact several times a step (357 in 80 MSP-tiny steps), costing ~40% more CPU time on its
// helper threads, which compete with a second job for the cores (two MSP-tiny jobs on 2 cores: 52 s
// against 41 s).
namespace {

// The first field tells a TensorBox from another object wrapped in this context (a NativeGenerator
// is a node-addon-api ObjectWrap): cheaper than a Node-API type tag on every handle.
constexpr uint64_t kTensorMagic = 0x766c706b69742d74ULL;  // "vlpkit-t"

struct TensorBox {
  uint64_t magic = kTensorMagic;
  at::Tensor tensor;
  int64_t external = 0;
};

thread_local at::Tensor g_pending;  // handed from wrapTensor() to the constructor (one per JS thread)
std::atomic<int64_t> g_live{0};

constexpr int64_t kExternalQuantum = int64_t{256} << 20;
thread_local int64_t t_liveBytes = 0;      // bytes of this JS thread's live tensor handles
thread_local int64_t t_reportedBytes = 0;  // what V8 was last told of them

void accountBytes(napi_env env, int64_t delta) {
  t_liveBytes += delta;
  int64_t change = t_liveBytes - t_reportedBytes;
  if (change >= kExternalQuantum || change <= -kExternalQuantum) {
    int64_t ignored;
    napi_adjust_external_memory(env, change, &ignored);
    t_reportedBytes = t_liveBytes;
  }
}

bool isBox(const void* data) {
  uint64_t magic = 0;
  if (data != nullptr) std::memcpy(&magic, data, sizeof magic);
  return magic == kTensorMagic;
}

void freeBox(napi_env env, TensorBox* box) {
  if (box->tensor.defined()) {
    box->tensor.reset();
    g_live--;
  }
  if (box->external > 0) accountBytes(env, -box->external);
  box->magic = 0;
  delete box;
}

void finalizeBox(napi_env env, void* data, void* /*hint*/) { freeBox(env, static_cast<TensorBox*>(data)); }

napi_value thisOf(napi_env env, napi_callback_info info) {
  napi_value self = nullptr;
  napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr);
  return self;
}

TensorBox* boxOf(napi_env env, napi_value v) {
  void* data = nullptr;
  if (napi_unwrap(env, v, &data) != napi_ok || !isBox(data)) return nullptr;
  auto* box = static_cast<TensorBox*>(data);
  return box->tensor.defined() ? box : nullptr;
}

napi_value Construct(napi_env env, napi_callback_info info) {
  napi_value self = thisOf(env, info);
  auto* box = new TensorBox();
  box->tensor = std::move(g_pending);
  g_pending.reset();
  if (box->tensor.defined()) {
    g_live++;
    box->external = static_cast<int64_t>(box->tensor.numel() * box->tensor.element_size());
    if (box->external > 0) accountBytes(env, box->external);
  }
  if (napi_wrap(env, self, box, finalizeBox, nullptr, nullptr) != napi_ok) {
    freeBox(env, box);
    napi_throw_error(env, nullptr, "NativeTensor: napi_wrap failed");
  }
  return self;
}

napi_value Dispose(napi_env env, napi_callback_info info) {
  napi_value self = thisOf(env, info);
  void* data = nullptr;
  if (napi_unwrap(env, self, &data) == napi_ok && isBox(data) && napi_remove_wrap(env, self, &data) == napi_ok) {
    freeBox(env, static_cast<TensorBox*>(data));
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

napi_value IsDisposed(napi_env env, napi_callback_info info) {
  napi_value out;
  napi_get_boolean(env, boxOf(env, thisOf(env, info)) == nullptr, &out);
  return out;
}

}  // namespace

void initTensorClass(Napi::Env env, Napi::Object exports) {
  napi_property_descriptor props[] = {
    {"dispose", nullptr, Dispose, nullptr, nullptr, nullptr, napi_default, nullptr},
    {"disposed", nullptr, nullptr, IsDisposed, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  NAPI_THROW_IF_FAILED_VOID(env, napi_define_class(env, "NativeTensor", NAPI_AUTO_LENGTH, Construct, nullptr, 2, props, &cls));
  Napi::Function f(env, cls);
  addonData(env).tensorCtor = Napi::Persistent(f);
  exports.Set("NativeTensor", f);
}

int64_t liveTensorCount() { return g_live; }

Napi::Value wrapTensor(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  napi_value obj;
  g_pending = std::move(t);
  napi_status st = napi_new_instance(env, addonData(env).tensorCtor.Value(), 0, nullptr, &obj);
  g_pending.reset();
  if (st != napi_ok) throw Napi::Error::New(env, "could not create a tensor handle");
  return Napi::Value(env, obj);
}

at::Tensor* findTensor(napi_env env, napi_value v) {
  TensorBox* box = boxOf(env, v);
  return box == nullptr ? nullptr : &box->tensor;
}

at::Tensor& unwrapTensor(const Napi::Value& v, const char* what) {
  Napi::Env env = v.Env();
  if (at::Tensor* t = findTensor(env, v)) return *t;
  // the slow path only decides which error to throw
  bool isHandle = v.IsObject() && v.As<Napi::Object>().InstanceOf(addonData(env).tensorCtor.Value());
  if (!isHandle) throw Napi::TypeError::New(env, std::string(what) + ": expected a tensor");
  throw Napi::Error::New(env, std::string(what) + ": tensor was already disposed");
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

// externalMemory(): V8's count of external memory (adjusted by 0 bytes: V8's own number), which
// includes what was reported of the tensors' bytes.
static Napi::Value ExternalMemory(const Napi::CallbackInfo& info) {
  int64_t total = 0;
  napi_adjust_external_memory(info.Env(), 0, &total);
  return Napi::Number::New(info.Env(), static_cast<double>(total));
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
  exports.Set("externalMemory", Napi::Function::New(env, ExternalMemory));
  exports.Set("sameStorage", Napi::Function::New(env, SameStorage));
}

}  // namespace vlp
