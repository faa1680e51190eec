{
  # Builds vlpkit's addon against libtorch.
  #   default:           Debian's libtorch-dev (headers in /usr/include, libs in the default path)
  #   LIBTORCH=/path:    any libtorch distribution (e.g. a CUDA build unpacked from pytorch.org);
  #                      CUDA support is compiled in when $LIBTORCH/lib/libtorch_cuda.so exists.
  "variables": {
    "libtorch%": "<!(node -p \"process.env.LIBTORCH || ''\")",
    "has_cuda%": "<!(node -p \"const p=process.env.LIBTORCH; p && require('fs').existsSync(p + '/lib/libtorch_cuda.so') ? 1 : 0\")",
    "has_gloo%": "<!(node -p \"const p=process.env.LIBTORCH; require('fs').existsSync((p ? p + '/include' : '/usr/include') + '/gloo') ? 1 : 0\")",
    # ProcessGroupNCCL needs a CUDA libtorch and nccl.h (libtorch zips link NCCL statically but may not ship the header:
    # set NCCL_INCLUDE_DIR, or install libnccl-dev / the CUDA toolkit's NCCL).
    "has_nccl%": "<!(node -p \"const fs=require('fs'), p=process.env.LIBTORCH; p && fs.existsSync(p + '/lib/libtorch_cuda.so') && [process.env.NCCL_INCLUDE_DIR, p + '/include', '/usr/include', '/usr/local/cuda/include'].some((d) => d && fs.existsSync(d + '/nccl.h')) ? 1 : 0\")",
    # c10d/reducer.hpp includes the distributed-autograd context header, which Debian's libtorch-dev lacks (see src/shim/).
    "has_dist_autograd%": "<!(node -p \"const p=process.env.LIBTORCH; require('fs').existsSync((p ? p + '/include' : '/usr/include') + '/torch/csrc/distributed/autograd/context/context.h') ? 1 : 0\")",
    "nccl_include%": "<!(node -p \"process.env.NCCL_INCLUDE_DIR || '/usr/local/cuda/include'\")"
  },
  "targets": [
    {
      "target_name": "vlpkit",
      "sources": ["src/addon.cc", "src/tensor.cc", "src/dispatch.cc", "src/autograd.cc", "src/dist.cc", "src/precision.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=gnu++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "conditions": [
        ["libtorch==''", {
          "include_dirs": ["/usr/include/torch/csrc/api/include"],
          "libraries": ["-ltorch", "-ltorch_cpu", "-lc10"]
        }, {
          "include_dirs": ["<(libtorch)/include", "<(libtorch)/include/torch/csrc/api/include"],
          "libraries": ["-L<(libtorch)/lib", "-Wl,-rpath,<(libtorch)/lib", "-ltorch", "-ltorch_cpu", "-lc10"]
        }],
        ["has_cuda==1", {
          "defines": ["VLP_WITH_CUDA"],
          "libraries": ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"]
        }],
        ["has_gloo==1", { "defines": ["USE_C10D_GLOO"] }],
        ["has_dist_autograd==0", { "include_dirs": ["src/shim"] }],
        ["has_nccl==1", { "defines": ["USE_C10D_NCCL"], "include_dirs": ["<(nccl_include)"] }]
      ]
    }
  ]
}
