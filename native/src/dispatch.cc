// Boxed calls into libtorch's operator dispatcher: any ATen operator by its schema name, with
// arguments converted from JS according to the operator's schema. Autograd, device dispatch and
// in-place/view semantics are libtorch's own, exactly as in PyTorch.
#include "vlp.h"
#include <ATen/core/stack.h>

namespace vlp {

using c10::IValue;
using c10::TypeKind;

static thread_local std::vector<c10::OperatorHandle> g_ops;  // handles are per JS thread, like the TS cache

// Names an argument in error messages; the string is only built when an error is thrown (building
// it eagerly for every argument of every call was a measurable part of the per-op overhead).
struct Where {
  const c10::FunctionSchema& schema;
  const c10::Argument& arg;
  std::string str() const { return schema.name() + " argument '" + arg.name() + "'"; }
};
static std::string operator+(const Where& w, const char* rest) { return w.str() + rest; }

static at::Tensor& tensorArg(const Napi::Value& v, const Where& w) {
  if (at::Tensor* t = findTensor(v.Env(), v)) return *t;
  return unwrapTensor(v, w.str().c_str());  // throws the precise error
}

static int64_t toInt(const Napi::Value& v, const Where& where) {
  if (v.IsNumber()) return v.As<Napi::Number>().Int64Value();
  if (v.IsBigInt()) { bool lossless; return v.As<Napi::BigInt>().Int64Value(&lossless); }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  throw Napi::TypeError::New(v.Env(), where + ": expected an integer");
}

static double toDouble(const Napi::Value& v, const Where& where) {
  if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue();
  throw Napi::TypeError::New(v.Env(), where + ": expected a number");
}

// A JS number becomes an integral Scalar when it is an integer, a floating one otherwise;
// {float: x} forces a floating Scalar (e.g. to promote an integer tensor).
static IValue toScalar(const Napi::Value& v, const Where& where) {
  if (v.IsBoolean()) return IValue(v.As<Napi::Boolean>().Value());
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9.007199254740992e15) return IValue(static_cast<int64_t>(d));
    return IValue(d);
  }
  if (v.IsObject() && v.As<Napi::Object>().Has("float")) return IValue(toDouble(v.As<Napi::Object>().Get("float"), where));
  throw Napi::TypeError::New(v.Env(), where + ": expected a number");
}

static IValue toIValue(const Napi::Value& v, const c10::TypePtr& type, const c10::Argument& arg, const Where& where);

static IValue toList(const Napi::Value& v, const c10::TypePtr& elem, const c10::Argument& arg, const Where& where) {
  Napi::Env env = v.Env();
  TypeKind k = elem->kind();
  if (!v.IsArray()) {
    // PyTorch accepts a single int for int[N] (e.g. kernel_size=3).
    if ((k == TypeKind::IntType || k == TypeKind::SymIntType) && v.IsNumber() && arg.N()) {
      return IValue(std::vector<int64_t>(*arg.N(), toInt(v, where)));
    }
    throw Napi::TypeError::New(env, where + ": expected an array");
  }
  Napi::Array a = v.As<Napi::Array>();
  uint32_t n = a.Length();
  switch (k) {
    case TypeKind::IntType:
    case TypeKind::SymIntType: {
      std::vector<int64_t> out(n);
      for (uint32_t i = 0; i < n; i++) out[i] = toInt(a.Get(i), where);
      return IValue(out);
    }
    case TypeKind::FloatType: {
      std::vector<double> out(n);
      for (uint32_t i = 0; i < n; i++) out[i] = toDouble(a.Get(i), where);
      return IValue(out);
    }
    case TypeKind::BoolType: {
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; i++) out.push_back(a.Get(i).ToBoolean().Value());
      return IValue(out);
    }
    case TypeKind::TensorType: {
      c10::List<at::Tensor> out;
      out.reserve(n);
      for (uint32_t i = 0; i < n; i++) out.push_back(tensorArg(a.Get(i), where));
      return IValue(out);
    }
    case TypeKind::OptionalType: {
      if (elem->expectRef<c10::OptionalType>().getElementType()->kind() == TypeKind::TensorType) {
        c10::List<c10::optional<at::Tensor>> out;
        for (uint32_t i = 0; i < n; i++) {
          Napi::Value e = a.Get(i);
          if (e.IsNull() || e.IsUndefined()) out.push_back(c10::nullopt);
          else out.push_back(tensorArg(e, where));
        }
        return IValue(out);
      }
      break;
    }
    default:
      break;
  }
  throw Napi::TypeError::New(env, where.str() + ": unsupported list type " + elem->str());
}

static IValue toIValue(const Napi::Value& v, const c10::TypePtr& type, const c10::Argument& arg, const Where& where) {
  Napi::Env env = v.Env();
  switch (type->kind()) {
    case TypeKind::OptionalType:
      if (v.IsUndefined() || v.IsNull()) return IValue();
      return toIValue(v, type->expectRef<c10::OptionalType>().getElementType(), arg, where);
    case TypeKind::TensorType:
      return IValue(tensorArg(v, where));
    case TypeKind::IntType:
    case TypeKind::SymIntType:
    // ScalarType, Layout and MemoryFormat are integers in the schemas of 1.13 and have types of their own in
    // later schemas; JS passes their integer codes either way
    case TypeKind::ScalarTypeType:
    case TypeKind::LayoutType:
    case TypeKind::MemoryFormatType:
      return IValue(toInt(v, where));
    case TypeKind::FloatType:
    case TypeKind::SymFloatType:
      return IValue(toDouble(v, where));
    case TypeKind::BoolType:
      return IValue(v.ToBoolean().Value());
    case TypeKind::NumberType:
      return toScalar(v, where);
    case TypeKind::StringType:
      return IValue(v.ToString().Utf8Value());
    case TypeKind::DeviceObjType:
      return IValue(c10::Device(v.ToString().Utf8Value()));
    case TypeKind::GeneratorType: {
      if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(addonData(env).generatorCtor.Value())) {
        throw Napi::TypeError::New(env, where + ": expected a Generator");
      }
      return IValue(GeneratorWrap::Unwrap(v.As<Napi::Object>())->gen);
    }
    case TypeKind::ListType:
      return toList(v, type->expectRef<c10::ListType>().getElementType(), arg, where);
    default:
      throw Napi::TypeError::New(env, where.str() + ": unsupported argument type " + type->str());
  }
}

static Napi::Value fromIValue(Napi::Env env, IValue v) {
  if (v.isTensor()) return wrapTensor(env, std::move(v).toTensor());
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out.Set(static_cast<uint32_t>(i), wrapTensor(env, list.get(i)));
    return out;
  }
  if (v.isTuple()) {
    auto elems = v.toTupleRef().elements();
    Napi::Array out = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) out.Set(static_cast<uint32_t>(i), fromIValue(env, elems[i]));
    return out;
  }
  if (v.isList()) {
    auto list = v.toList();
    Napi::Array out = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) out.Set(static_cast<uint32_t>(i), fromIValue(env, list.get(i)));
    return out;
  }
  if (v.isScalar()) return Napi::Number::New(env, v.toScalar().toDouble());
  throw Napi::TypeError::New(env, "unsupported return type " + v.tagKind());
}

// opHandle(name, overload) -> integer handle; throws if libtorch has no such operator.
static Napi::Value OpHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string name = info[0].ToString().Utf8Value();
    std::string overload = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    auto op = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!op) throw Napi::Error::New(env, "libtorch has no operator " + name + (overload.empty() ? "" : "." + overload));
    g_ops.push_back(*op);
    return Napi::Number::New(env, static_cast<double>(g_ops.size() - 1));
  });
}

static Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t h = info[0].As<Napi::Number>().Uint32Value();
  if (h >= g_ops.size()) throw Napi::RangeError::New(env, "bad operator handle");
  std::ostringstream s;
  s << g_ops[h].schema();
  return Napi::String::New(env, s.str());
}

// call(handle, argsArray) / callVoid(handle, argsArray), and the faster spread forms
// invoke(handle, ...args) / invokeVoid(handle, ...args) (no array to read element by element).
template <bool Spread>
static Napi::Value invoke(const Napi::CallbackInfo& info, bool wantResult) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    size_t h = info[0].As<Napi::Number>().Uint32Value();
    if (h >= g_ops.size()) throw Napi::RangeError::New(env, "bad operator handle");
    const c10::OperatorHandle& op = g_ops[h];
    const c10::FunctionSchema& schema = op.schema();
    const auto& args = schema.arguments();
    Napi::Array array;
    if (!Spread) array = info[1].As<Napi::Array>();
    size_t given = Spread ? info.Length() - 1 : array.Length();
    if (given > args.size()) {
      throw Napi::TypeError::New(env, schema.name() + ": " + std::to_string(given) + " arguments given, schema takes " +
                                          std::to_string(args.size()));
    }
    torch::jit::Stack stack;
    stack.reserve(args.size());
    for (size_t i = 0; i < args.size(); i++) {
      const c10::Argument& arg = args[i];
      Napi::Value v = i >= given ? env.Undefined() : Spread ? info[i + 1] : array.Get(static_cast<uint32_t>(i));
      if (v.IsUndefined()) {
        if (arg.default_value()) { stack.push_back(*arg.default_value()); continue; }
        if (arg.type()->kind() == TypeKind::OptionalType) { stack.emplace_back(); continue; }
        throw Napi::TypeError::New(env, schema.name() + ": missing argument '" + arg.name() + "'");
      }
      stack.push_back(toIValue(v, arg.type(), arg, Where{schema, arg}));
    }
    op.callBoxed(&stack);
    if (!wantResult) return env.Undefined();
    if (stack.size() == 1) return fromIValue(env, std::move(stack[0]));
    Napi::Array out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); i++) out.Set(static_cast<uint32_t>(i), fromIValue(env, std::move(stack[i])));
    return out;
  });
}

static Napi::Value Call(const Napi::CallbackInfo& info) { return invoke<false>(info, true); }
static Napi::Value CallVoid(const Napi::CallbackInfo& info) { return invoke<false>(info, false); }
static Napi::Value Invoke(const Napi::CallbackInfo& info) { return invoke<true>(info, true); }
static Napi::Value InvokeVoid(const Napi::CallbackInfo& info) { return invoke<true>(info, false); }

void initDispatch(Napi::Env env, Napi::Object exports) {
  exports.Set("opHandle", Napi::Function::New(env, OpHandle));
  exports.Set("opSchema", Napi::Function::New(env, OpSchema));
  exports.Set("call", Napi::Function::New(env, Call));
  exports.Set("callVoid", Napi::Function::New(env, CallVoid));
  exports.Set("invoke", Napi::Function::New(env, Invoke));
  exports.Set("invokeVoid", Napi::Function::New(env, InvokeVoid));
}

}  // namespace vlp
