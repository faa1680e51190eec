// c10d collectives (TCPStore rendezvous, ProcessGroupGloo on CPU, ProcessGroupNCCL with a CUDA libtorch).
#include "vlp.h"

namespace vlp {

void initDist(Napi::Env env, Napi::Object exports) {
#ifdef USE_C10D_GLOO
  exports.Set("hasGloo", Napi::Boolean::New(env, true));
#else
  exports.Set("hasGloo", Napi::Boolean::New(env, false));
#endif
}

}  // namespace vlp
