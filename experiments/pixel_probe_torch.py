"""PyTorch cross-check of experiments/pixel_probe.ts on identical inputs: which pixel networks learn the
synthetic world's shapes when told the labels? No vlpkit code runs here.

  DUMP=scratch/pixels WORLD=data/world-demo node --import tsx experiments/pixel_probe.ts   # once
  ARCH=stride|stride-bn|pool NORM=bn|gn|ln|none POOL=max|mean TRAIN=shape STEPS=1500 \
    /usr/bin/python3 experiments/pixel_probe_torch.py scratch/pixels

ARCH=stride: 3x3 stride-2 convolutions (the probe's ARCH=cnn; with NORM, the strided "conv stem" of
Xiao et al. 2021); ARCH=pool: 3x3 convolutions at full resolution, a norm, ReLU and 2x2 max pooling per
stage (VLMo's patchStem "conv" with NORM=gn). Same optimiser, schedule, clipping, batch and held-out
precision@k as pixel_probe.ts; prints every 300 steps.
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
S, L = meta["size"], meta["labels"]
x = torch.from_file(os.path.join(d, "x.f32"), size=(meta["train"] + meta["held"]) * 3 * S * S).view(-1, 3, S, S)
y = torch.from_file(os.path.join(d, "y.f32"), size=(meta["train"] + meta["held"]) * L).view(-1, L)
ntr = meta["train"]
arch, norm, pool = os.environ.get("ARCH", "pool"), os.environ.get("NORM", "gn"), os.environ.get("POOL", "max")
steps, train_on = int(os.environ.get("STEPS", "1500")), os.environ.get("TRAIN", "shape")
lo, hi = (0, L) if train_on == "all" else meta["groups"][train_on]
glo, ghi = meta["groups"]["shape"]


class ChannelNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c)

    def forward(self, t):
        return self.ln(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(c):
    return {"bn": lambda: nn.BatchNorm2d(c), "gn": lambda: nn.GroupNorm(1, c), "ln": lambda: ChannelNorm(c), "none": nn.Identity}[norm]()


chans = [16, 32, 64, 128] if arch == "pool" else [32, 64, 128, 128]
layers, cin = [], 3
for c in chans:
    if arch == "pool":
        layers += [nn.Conv2d(cin, c, 3, 1, 1, bias=norm == "none"), make_norm(c), nn.ReLU(), nn.MaxPool2d(2)]
    else:
        layers += [nn.Conv2d(cin, c, 3, 2, 1, bias=norm == "none"), make_norm(c), nn.ReLU()]
    cin = c
net = nn.Sequential(*layers, nn.Conv2d(cin, 64, 1))
head = nn.Linear(64, L)


def forward(b):
    f = net(b).flatten(2)
    return head(f.amax(2) if pool == "max" else f.mean(2))


params = list(net.parameters()) + list(head.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
gen = torch.Generator().manual_seed(0)


def held_out():
    net.eval()
    with torch.no_grad():
        s = torch.cat([forward(x[i:i + 100]) for i in range(ntr, len(x), 100)])[:, glo:ghi]
    net.train()
    yy = y[ntr:, glo:ghi]
    k = yy.sum(1).long()
    prec = sum(yy[i][s[i].topk(int(k[i])).indices].sum().item() / int(k[i]) for i in range(len(yy)))
    return prec / len(yy), (k.float() / (ghi - glo)).mean().item()


t0, running = time.time(), None
for step in range(1, steps + 1):
    idx = torch.randint(ntr, (32,), generator=gen)
    loss = F.binary_cross_entropy_with_logits(forward(x[idx])[:, lo:hi], y[idx, lo:hi])
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, 1.0)
    for g in opt.param_groups:
        g["lr"] = 1e-3 * min(step / (0.05 * steps), (steps - step) / (0.95 * steps))
    opt.step()
    running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
    if step % 300 == 0:
        p, r = held_out()
        print(f"ARCH={arch} NORM={norm} POOL={pool} TRAIN={train_on} step {step}: train bce {running:.4f}; held-out shape P@k {p:.3f} (random {r:.3f}) ({time.time() - t0:.0f} s)", flush=True)
