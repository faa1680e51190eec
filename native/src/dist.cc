// c10d bindings: TCPStore rendezvous, ProcessGroupGloo (CPU tensors) and, when the libtorch given by
// LIBTORCH has it, ProcessGroupNCCL; the collectives all_reduce, broadcast, all_gather (plain and
// differentiable) and barrier; and c10d::Reducer, PyTorch's DDP gradient bucketing engine, whose
// autograd hooks all-reduce each bucket as soon as its gradients are ready (overlapped with the
// rest of the backward pass). Policy (bucket assignment, when to sync, error wording, launching)
// lives in TypeScript: src/engine/dist.ts and src/engine/ddp.ts.
//
// Every collective blocks until it completes or fails. A dead peer (closed socket) fails it at once;
// a hung peer fails it after the group's timeout. Both become JS Errors naming the operation.
//
// Lifetime: dispose() releases a store, group or reducer. An object that is garbage-collected
// without dispose() is deliberately leaked instead of destroyed: destroying a process group joins
// its worker threads, which can block until the timeout when a peer is gone, and that must never
// happen inside a GC finalizer or at process exit.
#include "vlp.h"

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <initializer_list>
#include <mutex>
#include <type_traits>
#include <unordered_map>

namespace vlp {

namespace {

using PG = c10d::ProcessGroup;
using ms = std::chrono::milliseconds;

// Type tags tell our wrapped objects apart when one is passed to another (a store to a group, a
// group to a reducer): napi_unwrap alone cannot.
constexpr napi_type_tag kStoreTag = {0x766c706b69747374ULL, 0x6f72652d74616731ULL};
constexpr napi_type_tag kGroupTag = {0x766c706b69746772ULL, 0x6f75702d74616731ULL};

std::vector<uint8_t> bytesOf(const Napi::Value& v) {
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    return std::vector<uint8_t>(s.begin(), s.end());
  }
  if (v.IsTypedArray()) {
    Napi::TypedArray a = v.As<Napi::TypedArray>();
    const uint8_t* p = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
    return std::vector<uint8_t>(p, p + a.ByteLength());
  }
  throw Napi::TypeError::New(v.Env(), "store: expected a string or a Uint8Array value");
}

std::vector<std::string> stringsOf(const Napi::Value& v) {
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).ToString().Utf8Value());
  return out;
}

std::vector<at::Tensor> tensorsOf(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(unwrapTensor(a.Get(i), what));
  return out;
}

// ---- process groups that autograd can reach ----------------------------------------------------
// The differentiable all_gather's backward runs inside libtorch's autograd engine, after the JS call
// that built the graph has returned; it finds its group here by id.
std::mutex g_groupsMutex;
std::unordered_map<int64_t, c10::intrusive_ptr<PG>> g_groups;
int64_t g_nextGroup = 1;

c10::intrusive_ptr<PG> groupById(int64_t id) {
  std::lock_guard<std::mutex> lock(g_groupsMutex);
  auto it = g_groups.find(id);
  TORCH_CHECK(it != g_groups.end(), "all_gather backward: its process group was disposed");
  return it->second;
}

void waitWork(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(); }

// ---- libtorch 1.13 vs 2.x ------------------------------------------------------------------------
// Up to 1.13 ProcessGroupGloo/NCCL are ProcessGroups. Since 2.0 they are c10d::Backends, and a
// ProcessGroup dispatches each collective to the backend of the tensors' device type; its constructor
// took an Options (backend name, timeout) until a later 2.x took none and a default backend type
// instead (detected below by whether ProcessGroup::Options exists, not by version number).
#if VLP_TORCH_AT_LEAST(2, 0)
template <typename P, typename = void>
struct HasGroupOptions : std::false_type {};
template <typename P>
struct HasGroupOptions<P, std::void_t<typename P::Options>> : std::true_type {};

template <typename P = PG>
c10::intrusive_ptr<P> emptyGroup(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size, const std::string& name, ms timeout) {
  if constexpr (HasGroupOptions<P>::value) {
    return c10::make_intrusive<P>(store, rank, size, c10::make_intrusive<typename P::Options>(name, timeout));
  } else {
    auto pg = c10::make_intrusive<P>(store, rank, size);
    pg->setDefaultBackend(P::strToBackendType(name));
    return pg;
  }
}
#endif

// The group that runs `backend`'s collectives for tensors on `devices` (gloo: CPU and CUDA, as
// torch.distributed registers it; NCCL: CUDA).
template <typename B>
c10::intrusive_ptr<PG> asGroup(c10::intrusive_ptr<B> backend, const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                               const std::string& name, ms timeout, std::initializer_list<c10::DeviceType> devices) {
#if VLP_TORCH_AT_LEAST(2, 0)
  auto pg = emptyGroup(store, rank, size, name, timeout);
  auto type = name == "nccl" ? PG::BackendType::NCCL : PG::BackendType::GLOO;
  for (auto d : devices) pg->setBackend(d, type, backend);
  return pg;
#else
  (void)store, (void)rank, (void)size, (void)name, (void)timeout, (void)devices;
  return backend;
#endif
}

// Gather x from every rank and concatenate along dim 0 in rank order (all ranks: same shape).
at::Tensor gatherCat(const c10::intrusive_ptr<PG>& pg, const at::Tensor& x) {
  at::Tensor in = x.contiguous();
  int world = pg->getSize();
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < world; r++) out[0].push_back(at::empty_like(in));
  std::vector<at::Tensor> ins{in};
  waitWork(pg->allgather(out, ins));
  return at::cat(out[0], 0);
}

// all_gather whose backward sums the incoming gradient over ranks (all_reduce) and returns this
// rank's slice: the gradient of Σ_ranks loss_r with respect to this rank's input, as if one process
// had computed every rank's loss (open_clip's gather_with_grad, torch.distributed.nn.all_gather).
struct GatherWithGrad : public torch::autograd::Function<GatherWithGrad> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, int64_t groupId) {
    ctx->saved_data["group"] = groupId;
    ctx->saved_data["rows"] = x.size(0);
    return gatherCat(groupById(groupId), x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto pg = groupById(ctx->saved_data["group"].toInt());
    int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor g = grads[0].clone(at::MemoryFormat::Contiguous);  // all_reduce works in place
    std::vector<at::Tensor> ts{g};
    waitWork(pg->allreduce(ts, c10d::AllreduceOptions()));
    return {g.narrow(0, pg->getRank() * rows, rows), at::Tensor()};
  }
};

// ---- Store ---------------------------------------------------------------------------------------

class StoreWrap : public Napi::ObjectWrap<StoreWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeStore", {
      InstanceMethod<&StoreWrap::Set>("set"),
      InstanceMethod<&StoreWrap::Get>("get"),
      InstanceMethod<&StoreWrap::Add>("add"),
      InstanceMethod<&StoreWrap::Check>("check"),
      InstanceMethod<&StoreWrap::Wait>("wait"),
      InstanceMethod<&StoreWrap::Dispose>("dispose"),
      InstanceAccessor<&StoreWrap::Port>("port"),
    });
  }

  // new NativeStore(host, port, isServer, worldSize, timeoutMs, waitWorkers): a TCPStore. The
  // server (rank 0) listens on host:port (0 = any free port); with waitWorkers it blocks until
  // worldSize clients (itself included) have joined. A client connects, retrying until the timeout.
  explicit StoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StoreWrap>(info) {
    Napi::Env env = info.Env();
    guard(env, [&]() -> Napi::Value {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
      o.isServer = info[2].ToBoolean().Value();
      o.numWorkers = static_cast<size_t>(info[3].As<Napi::Number>().Uint32Value());
      // a client must register (waitWorkers) or its later waits are never answered; the server
      // may skip the wait when the caller checks who joined itself
      o.waitWorkers = !o.isServer || info[5].ToBoolean().Value();
      o.timeout = ms(info[4].As<Napi::Number>().Int64Value());
      store_ = c10::make_intrusive<c10d::TCPStore>(info[0].ToString().Utf8Value(), o);
      return env.Undefined();
    });
    info.This().As<Napi::Object>().TypeTag(&kStoreTag);
  }
  ~StoreWrap() override {
    if (store_) store_.release();  // leaked on purpose, see the top of this file
  }

  c10::intrusive_ptr<c10d::Store> store(Napi::Env env) {
    if (!store_) throw Napi::Error::New(env, "store was disposed");
    return store_;
  }

 private:
  Napi::Value Set(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      store(info.Env())->set(info[0].ToString().Utf8Value(), bytesOf(info[1]));
      return info.Env().Undefined();
    });
  }
  Napi::Value Get(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto v = store(info.Env())->get(info[0].ToString().Utf8Value());
      return Napi::Buffer<uint8_t>::Copy(info.Env(), v.data(), v.size());
    });
  }
  Napi::Value Add(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      int64_t n = store(info.Env())->add(info[0].ToString().Utf8Value(), info[1].As<Napi::Number>().Int64Value());
      return Napi::Number::New(info.Env(), static_cast<double>(n));
    });
  }
  Napi::Value Check(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value { return Napi::Boolean::New(info.Env(), store(info.Env())->check(stringsOf(info[0]))); });
  }
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      store(info.Env())->wait(stringsOf(info[0]), ms(info[1].As<Napi::Number>().Int64Value()));
      return info.Env().Undefined();
    });
  }
  Napi::Value Port(const Napi::CallbackInfo& info) {
    auto* tcp = dynamic_cast<c10d::TCPStore*>(store(info.Env()).get());
    return Napi::Number::New(info.Env(), tcp ? tcp->getPort() : 0);
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    store_.reset();
    return info.Env().Undefined();
  }

  c10::intrusive_ptr<c10d::Store> store_;
};

// ---- ProcessGroup ------------------------------------------------------------------------------

class GroupWrap : public Napi::ObjectWrap<GroupWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeProcessGroup", {
      InstanceMethod<&GroupWrap::AllReduce>("allReduce"),
      InstanceMethod<&GroupWrap::Broadcast>("broadcast"),
      InstanceMethod<&GroupWrap::AllGather>("allGather"),
      InstanceMethod<&GroupWrap::AllGatherWithGrad>("allGatherWithGrad"),
      InstanceMethod<&GroupWrap::Barrier>("barrier"),
      InstanceMethod<&GroupWrap::Dispose>("dispose"),
      InstanceAccessor<&GroupWrap::Rank>("rank"),
      InstanceAccessor<&GroupWrap::Size>("size"),
      InstanceAccessor<&GroupWrap::Backend>("backend"),
    });
  }

  // new NativeProcessGroup(store, prefix, rank, size, backend, timeoutMs, device): connects every
  // rank to every other (keys under `prefix` in the store). device (gloo): {iface} or {hostname}
  // for the address to bind, else gloo's default (this machine's hostname, loopback fallback).
  explicit GroupWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GroupWrap>(info) {
    Napi::Env env = info.Env();
    guard(env, [&]() -> Napi::Value {
      Napi::Object so = info[0].As<Napi::Object>();
      if (!so.CheckTypeTag(&kStoreTag)) throw Napi::TypeError::New(env, "NativeProcessGroup: expected a NativeStore");
      auto base = StoreWrap::Unwrap(so)->store(env);
      auto store = c10::make_intrusive<c10d::PrefixStore>(info[1].ToString().Utf8Value(), base);
      int rank = info[2].As<Napi::Number>().Int32Value();
      int size = info[3].As<Napi::Number>().Int32Value();
      std::string backend = info[4].ToString().Utf8Value();
      ms timeout(info[5].As<Napi::Number>().Int64Value());
      Napi::Object dev = info[6].IsObject() ? info[6].As<Napi::Object>() : Napi::Object::New(env);
      if (backend == "gloo") {
#ifdef USE_C10D_GLOO
        auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
        if (dev.Has("iface") && dev.Get("iface").IsString()) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(dev.Get("iface").As<Napi::String>().Utf8Value()));
        } else if (dev.Has("hostname") && dev.Get("hostname").IsString()) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(dev.Get("hostname").As<Napi::String>().Utf8Value()));
        } else {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        pg_ = asGroup(c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts), store, rank, size, backend, timeout,
                      {c10::DeviceType::CPU, c10::DeviceType::CUDA});
#else
        throw Napi::Error::New(env, "this vlpkit addon was built without gloo (install libgloo-dev and rebuild)");
#endif
      } else if (backend == "nccl") {
#ifdef USE_C10D_NCCL
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout;
        pg_ = asGroup(c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts), store, rank, size, backend, timeout,
                      {c10::DeviceType::CUDA});
#else
        throw Napi::Error::New(env, "this vlpkit addon was built without NCCL (it needs a CUDA libtorch with NCCL: LIBTORCH=/path make setup)");
#endif
      } else {
        throw Napi::Error::New(env, "unknown backend \"" + backend + "\" (expected gloo or nccl)");
      }
      std::lock_guard<std::mutex> lock(g_groupsMutex);
      id_ = g_nextGroup++;
      g_groups[id_] = pg_;
      return env.Undefined();
    });
    info.This().As<Napi::Object>().TypeTag(&kGroupTag);
  }
  ~GroupWrap() override {
    if (pg_) pg_.release();  // leaked on purpose (the registry keeps its own reference too)
  }

  c10::intrusive_ptr<PG> group(Napi::Env env) {
    if (!pg_) throw Napi::Error::New(env, "process group was disposed");
    return pg_;
  }

 private:
  // allReduce(tensors, op): each tensor all-reduced in place, one collective per tensor, all in
  // flight at once. op: "sum" | "max" | "min" | "product".
  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto pg = group(info.Env());
      auto ts = tensorsOf(info[0], "allReduce");
      std::string op = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
      c10d::AllreduceOptions o;
      if (op == "sum") o.reduceOp = c10d::ReduceOp::SUM;
      else if (op == "max") o.reduceOp = c10d::ReduceOp::MAX;
      else if (op == "min") o.reduceOp = c10d::ReduceOp::MIN;
      else if (op == "product") o.reduceOp = c10d::ReduceOp::PRODUCT;
      else throw Napi::Error::New(info.Env(), "allReduce: unknown op \"" + op + "\"");
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& t : ts) {
        TORCH_CHECK(t.is_contiguous(), "allReduce: tensors must be contiguous");
        std::vector<at::Tensor> one{t};
        works.push_back(pg->allreduce(one, o));
      }
      for (auto& w : works) waitWork(w);
      return info.Env().Undefined();
    });
  }
  // broadcast(tensors, root): root's values into every rank's tensors, in place.
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto pg = group(info.Env());
      auto ts = tensorsOf(info[0], "broadcast");
      c10d::BroadcastOptions o;
      o.rootRank = info[1].As<Napi::Number>().Int64Value();
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& t : ts) {
        TORCH_CHECK(t.is_contiguous(), "broadcast: tensors must be contiguous");
        std::vector<at::Tensor> one{t};
        works.push_back(pg->broadcast(one, o));
      }
      for (auto& w : works) waitWork(w);
      return info.Env().Undefined();
    });
  }
  // allGather(x) -> every rank's x concatenated along dim 0, in rank order (no gradient).
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      at::NoGradGuard noGrad;
      return wrapTensor(info.Env(), gatherCat(group(info.Env()), unwrapTensor(info[0], "allGather").detach()));
    });
  }
  // allGatherWithGrad(x): the same, differentiable (see GatherWithGrad).
  Napi::Value AllGatherWithGrad(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      group(info.Env());
      return wrapTensor(info.Env(), GatherWithGrad::apply(unwrapTensor(info[0], "allGatherWithGrad"), id_));
    });
  }
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      waitWork(group(info.Env())->barrier());
      return info.Env().Undefined();
    });
  }
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), group(info.Env())->getRank()); }
  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), group(info.Env())->getSize()); }
  Napi::Value Backend(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), group(info.Env())->getBackendName()); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (pg_) {
      {
        std::lock_guard<std::mutex> lock(g_groupsMutex);
        g_groups.erase(id_);
      }
      pg_.reset();
    }
    return info.Env().Undefined();
  }

  c10::intrusive_ptr<PG> pg_;
  int64_t id_ = 0;
};

// ---- Reducer -----------------------------------------------------------------------------------

// Drops the Reducer's advice to turn find_unused_parameters off when a step happened to use every
// parameter: vlpkit always finds unused parameters (SemVLP's modes and VLMo's stages use different
// ones) and the message would only be noise; other warnings pass through.
struct UnusedParamsAdviceFilter : c10::WarningHandler {
  c10::WarningHandler* next = c10::Warning::get_warning_handler();
  static bool isAdvice(const std::string& msg) { return msg.find("find_unused_parameters=True was specified") != std::string::npos; }
#if VLP_TORCH_AT_LEAST(2, 0)
  // 2.0 passes a c10::Warning (message, location, verbatim flag) instead of its parts
  void process(const c10::Warning& w) override {
    if (!isAdvice(w.msg())) next->process(w);
  }
#else
  void process(const c10::SourceLocation& loc, const std::string& msg, const bool verbatim) override {
    if (!isAdvice(msg)) next->process(loc, msg, verbatim);
  }
#endif
};

class ReducerWrap : public Napi::ObjectWrap<ReducerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeReducer", {
      InstanceMethod<&ReducerWrap::PrepareForBackward>("prepareForBackward"),
      InstanceMethod<&ReducerWrap::Dispose>("dispose"),
    });
  }

  // new NativeReducer(group, params, buckets, bucketLimits, names, findUnused): gradients of
  // `params` are averaged over the group in the given buckets (lists of parameter indices, the
  // first bucket is reduced first), during the backward passes that follow prepareForBackward().
  // With findUnused, parameters outside the graph of the outputs are found per step; those unused
  // on every rank keep no gradient, as in one process.
  explicit ReducerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ReducerWrap>(info) {
    Napi::Env env = info.Env();
    guard(env, [&]() -> Napi::Value {
      Napi::Object go = info[0].As<Napi::Object>();
      if (!go.CheckTypeTag(&kGroupTag)) throw Napi::TypeError::New(env, "NativeReducer: expected a NativeProcessGroup");
      auto pg = GroupWrap::Unwrap(go)->group(env);
      auto params = tensorsOf(info[1], "NativeReducer params");
      std::vector<std::vector<size_t>> buckets;
      Napi::Array ba = info[2].As<Napi::Array>();
      for (uint32_t i = 0; i < ba.Length(); i++) {
        Napi::Array b = ba.Get(i).As<Napi::Array>();
        std::vector<size_t> idx;
        for (uint32_t j = 0; j < b.Length(); j++) idx.push_back(b.Get(j).As<Napi::Number>().Uint32Value());
        buckets.push_back(std::move(idx));
      }
      std::vector<size_t> limits;
      Napi::Array la = info[3].As<Napi::Array>();
      for (uint32_t i = 0; i < la.Length(); i++) limits.push_back(static_cast<size_t>(la.Get(i).As<Napi::Number>().Int64Value()));
      std::unordered_map<size_t, std::string> names;
      auto nv = stringsOf(info[4]);
      for (size_t i = 0; i < nv.size(); i++) names[i] = nv[i];
      bool findUnused = info[5].ToBoolean().Value();
      for (auto& p : params) TORCH_CHECK(p.requires_grad() && p.is_leaf(), "NativeReducer: every parameter must be a leaf that requires grad");
      size_t cap = 0;
      for (size_t l : limits) cap = std::max(cap, l);
      reducer_ = std::make_unique<c10d::Reducer>(std::move(params), std::move(buckets), std::move(limits), pg,
                                                 std::vector<bool>(nv.size(), false), static_cast<int64_t>(cap), findUnused,
                                                 /*gradient_as_bucket_view=*/false, std::move(names),
                                                 static_cast<int64_t>(limits.empty() ? cap : limits.front()));
      return env.Undefined();
    });
  }
  ~ReducerWrap() override {
    if (reducer_) reducer_.release();  // leaked on purpose, see the top of this file
  }

 private:
  // prepareForBackward(outputs): the next backward pass from `outputs` all-reduces the gradients.
  Napi::Value PrepareForBackward(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      if (!reducer_) throw Napi::Error::New(info.Env(), "reducer was disposed");
      UnusedParamsAdviceFilter filter;
      c10::Warning::WarningHandlerGuard quiet(&filter);
      reducer_->prepare_for_backward(tensorsOf(info[0], "prepareForBackward"));
      return info.Env().Undefined();
    });
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      reducer_.reset();
      return info.Env().Undefined();
    });
  }

  std::unique_ptr<c10d::Reducer> reducer_;
};

}  // namespace

void initDist(Napi::Env env, Napi::Object exports) {
#ifdef USE_C10D_GLOO
  exports.Set("hasGloo", Napi::Boolean::New(env, true));
#else
  exports.Set("hasGloo", Napi::Boolean::New(env, false));
#endif
#ifdef USE_C10D_NCCL
  exports.Set("hasNccl", Napi::Boolean::New(env, true));
#else
  exports.Set("hasNccl", Napi::Boolean::New(env, false));
#endif
  exports.Set("NativeStore", StoreWrap::Define(env));
  exports.Set("NativeProcessGroup", GroupWrap::Define(env));
  exports.Set("NativeReducer", ReducerWrap::Define(env));
}

}  // namespace vlp
