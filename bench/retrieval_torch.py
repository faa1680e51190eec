"""PyTorch side of bench/retrieval.ts: VLMo retrieval scoring with the plain-PyTorch VLMo of
test/fixtures/vlmo_reference.py, on the weights and inputs bench/retrieval.ts wrote to DIR.

  retrieval_torch.py DIR THREADS

DIR holds config.json ({"model": VLMoConfig, "images", "captions", "textLen", "batch"}),
model.safetensors (vlpkit's weights, official names), st.py (a safetensors reader), pixels.u8
([images, 3, S, S] bytes), ids.i64 and mask.i64 ([captions, textLen]), pairs.i64 ([P, 2] image,
caption) for the fusion sample.

Serves one request per stdin line and answers with one JSON line:
  dual    embed every image and caption once (batches of `batch`), one matrix product; writes the
          [images x captions] scores to DIR/scores_torch.f32; {"ms", "images_ms", "captions_ms", "matmul_ms"}
  fusion  ITM logits of the sampled pairs through the fusion encoder, `batch` pairs per pass; {"ms", "pairs"}
"""
import json
import os
import sys
import time

import torch

D = sys.argv[1]
torch.set_num_threads(int(sys.argv[2]))
sys.path.insert(0, D)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures"))
from st import load_st  # noqa: E402
from vlmo_reference import MODE, VLMoRef  # noqa: E402

MODE["style"] = "fast"
cfg = json.load(open(os.path.join(D, "config.json")))
c = cfg["model"]
S, T = c["imageSize"], cfg["textLen"]
Ni, Nt, B = cfg["images"], cfg["captions"], cfg["batch"]
model = VLMoRef(c).eval()
model.load_state_dict(load_st(os.path.join(D, "model.safetensors")), strict=True)


def read(name, dtype, shape):
    return torch.frombuffer(bytearray(open(os.path.join(D, name), "rb").read()), dtype=dtype).reshape(shape)


pixels_u8 = read("pixels.u8", torch.uint8, (Ni, 3, S, S))
ids = read("ids.i64", torch.int64, (Nt, T))
mask = read("mask.i64", torch.int64, (Nt, T))
pairs = read("pairs.i64", torch.int64, (-1, 2))


def pixels(a, b):
    # the same normalisation as the vlpkit side: mean = std = 0.5 on [0, 1] values
    return pixels_u8[a:b].float().div(255).sub(0.5).div(0.5)


@torch.no_grad()
def dual():
    t0 = time.perf_counter()
    img = torch.cat([model.image(pixels(i, i + B))["itc"] for i in range(0, Ni, B)])
    t1 = time.perf_counter()
    txt = torch.cat([model.text(ids[i:i + B], mask[i:i + B])["itc"] for i in range(0, Nt, B)])
    t2 = time.perf_counter()
    scores = img @ txt.t()
    t3 = time.perf_counter()
    scores.contiguous().numpy().tofile(os.path.join(D, "scores_torch.f32"))
    return {"ms": (t3 - t0) * 1000, "images_ms": (t1 - t0) * 1000, "captions_ms": (t2 - t1) * 1000, "matmul_ms": (t3 - t2) * 1000}


@torch.no_grad()
def fusion():
    t0 = time.perf_counter()
    for s in range(0, pairs.shape[0], B):
        p = pairs[s:s + B]
        px = torch.stack([pixels(int(i), int(i) + 1)[0] for i in p[:, 0]])
        o = model.fusion(ids[p[:, 1]], mask[p[:, 1]], px)
        model.itm_score(o["pooled"])
    return {"ms": (time.perf_counter() - t0) * 1000, "pairs": int(pairs.shape[0])}


print(json.dumps({"ready": True, "threads": torch.get_num_threads(), "torch": torch.__version__}), flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "dual":
        print(json.dumps(dual()), flush=True)
    elif cmd == "fusion":
        print(json.dumps(fusion()), flush=True)
    else:
        break
