#include "vlp.h"
#include <cstdlib>
#include <mutex>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace vlp {

// glibc serves blocks above its mmap threshold (128 KB, raised on the fly only after a large block is
// freed) with fresh page-aligned mmaps: every large tensor then costs page faults on first touch, and
// streaming over several page-aligned tensors at once (optimizer updates) was measured ~30% slower
// than in a Python process, where importing torch has already raised the threshold. Fixing it at
// glibc's dynamic maximum (32 MB) keeps tensors below that on the heap, as in PyTorch; the trim
// threshold follows glibc's own rule (2x). MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win.
static void tuneMalloc() {
#if defined(__GLIBC__)
  static std::once_flag once;
  std::call_once(once, [] {
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr && std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr) {
      mallopt(M_MMAP_THRESHOLD, 32 << 20);
      mallopt(M_TRIM_THRESHOLD, 64 << 20);
    }
  });
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tuneMalloc();
  env.SetInstanceData(new AddonData());
  initTensorClass(env, exports);
  GeneratorWrap::Init(env, exports);
  initTensor(env, exports);
  initDispatch(env, exports);
  initAutograd(env, exports);
  initDist(env, exports);
  initPrecision(env, exports);
  return exports;
}

}  // namespace vlp

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return vlp::Init(env, exports); }

NODE_API_MODULE(vlpkit, InitAddon)
