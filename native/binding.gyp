{
  # Builds vlpkit's addon against libtorch. Which one, and the flags for it, come from
  # scripts/libtorch.mjs (`node scripts/libtorch.mjs describe` says what it found):
  #   default:           Debian's libtorch-dev (headers in /usr/include, libs in the default path)
  #   LIBTORCH=/path:    any libtorch distribution (e.g. a CUDA build unpacked from pytorch.org);
  #                      CUDA support is compiled in when $LIBTORCH/lib/libtorch_cuda.so exists.
  #   LIBTORCH=auto:     the libtorch inside the PyTorch of the Python on PATH ($PYTHON picks another),
  #                      CPU or CUDA, with its C++ ABI; falls back to Debian's libtorch-dev.
  # NCCL (ProcessGroupNCCL) needs a CUDA libtorch and nccl.h: NCCL_INCLUDE_DIR, or the usual places.
  # Paths must not contain spaces (gyp splits the lists on whitespace).
  "variables": {
    "cxx11abi%": "<!(node ../scripts/libtorch.mjs cxx11abi)"
  },
  "targets": [
    {
      "target_name": "vlpkit",
      "sources": ["src/addon.cc", "src/tensor.cc", "src/dispatch.cc", "src/autograd.cc", "src/dist.cc", "src/precision.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "<!@(node ../scripts/libtorch.mjs include_dirs)"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8", "<!@(node ../scripts/libtorch.mjs defines)"],
      "libraries": ["<!@(node ../scripts/libtorch.mjs libraries)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=gnu++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "conditions": [
        # node's common.gypi compiles for the C++11 ABI of libstdc++; the pip wheels of PyTorch 1.13 and most 2.x use the old one
        ["cxx11abi==0", { "defines!": ["_GLIBCXX_USE_CXX11_ABI=1"], "defines": ["_GLIBCXX_USE_CXX11_ABI=0"] }]
      ]
    }
  ]
}
