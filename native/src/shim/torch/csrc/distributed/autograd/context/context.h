// Stand-in for a header Debian's libtorch-dev does not ship (the RPC/distributed-autograd context),
// included by c10d/reducer.hpp. The Reducer only holds a shared_ptr to a context (never set without
// RPC) and checks the callback type, so these two declarations are all it needs. binding.gyp adds
// this folder to the include path only when the real header is missing.
#pragma once
#include <ATen/core/Tensor.h>
#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
