#include "vlp.h"

namespace vlp {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  TensorWrap::Init(env, exports);
  GeneratorWrap::Init(env, exports);
  initTensor(env, exports);
  initDispatch(env, exports);
  initAutograd(env, exports);
  initDist(env, exports);
  return exports;
}

}  // namespace vlp

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return vlp::Init(env, exports); }

NODE_API_MODULE(vlpkit, InitAddon)
