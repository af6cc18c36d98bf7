"""PyTorch CPU twin of `npm run bench -- step`: the same MLP GAN and DCGAN (shapes of
shared/models/), non-saturating loss, Adam, batch 64; times one full step (D phase + G
phase) and prints one JSON object. Run by bench/step.ts; needs only torch.

usage: python3 bench/torch_step.py [--models mlp,dcgan] [--steps N] [--warmup N] [--batch B]
                                   [--device cpu|cuda]
       python3 bench/torch_step.py --serve SPECS_JSON
(bench/gpu.sh runs it with --device cuda beside the webgpu/tensorflow cells.)

--serve: the interleaved comparison of `bench step` (A B A B ..., both sides kept warm).
SPECS_JSON maps a model name to its shape (see twin()); every model is built and
warmed up, one JSON line {"ready": ...} says so (with the OpenBLAS kernel in use), then
each stdin line {"model": M, "steps": N} is answered by one line {"model": M, "stepMs": [...]}.
"""

import argparse
import ctypes
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

LATENT = 64
LEAK = 0.2


def mlp_gan():
    """G 64 -> 256 -> 512 -> 784 (ReLU, tanh); D 784 -> 512 -> 256 -> 1 (LeakyReLU 0.2)."""
    g = nn.Sequential(
        nn.Linear(LATENT, 256), nn.ReLU(),
        nn.Linear(256, 512), nn.ReLU(),
        nn.Linear(512, 784), nn.Tanh(),
        nn.Unflatten(1, (1, 28, 28)),
    )
    d = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512), nn.LeakyReLU(LEAK),
        nn.Linear(512, 256), nn.LeakyReLU(LEAK),
        nn.Linear(256, 1),
    )
    return g, d


def dcgan(f=32):
    """G: dense 7*7*2f, ReLU, convT 5x5/2 -> 14x14xf, ReLU, convT 5x5/2 -> 28x28x1, tanh.
    D: conv 5x5/2 -> 14x14xf, LReLU, conv 5x5/2 -> 7x7x2f, LReLU, dense -> 1. No batch norm.
    Padding 2 (+ output_padding 1 for the transposed convs) is tfjs's 'same' at these sizes."""
    g = nn.Sequential(
        nn.Linear(LATENT, 7 * 7 * 2 * f), nn.ReLU(),
        nn.Unflatten(1, (2 * f, 7, 7)),
        nn.ConvTranspose2d(2 * f, f, 5, stride=2, padding=2, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(f, 1, 5, stride=2, padding=2, output_padding=1), nn.Tanh(),
    )
    d = nn.Sequential(
        nn.Conv2d(1, f, 5, stride=2, padding=2), nn.LeakyReLU(LEAK),
        nn.Conv2d(f, 2 * f, 5, stride=2, padding=2), nn.LeakyReLU(LEAK),
        nn.Flatten(),
        nn.Linear(7 * 7 * 2 * f, 1),
    )
    return g, d


MODELS = {"mlp": (mlp_gan, 50, 3), "dcgan": (dcgan, 20, 2)}


def twin(spec):
    """G and D of an Agon model from its shape (bench/step.ts torchSpec):
    {"kind": "mlp", "latent", "gHidden", "dHidden", "shape": [h, w, c]} — ReLU in G, tanh out,
    LeakyReLU 0.2 in D; or {"kind": "dcgan", "latent", "res", "channels", "gFilters",
    "dFilters", "maxFilters", "kernel", "gNorm", "dNorm"} — shared/models/dcgan.ts's layout:
    G dense to base×base (7 for 28 px, else 4) then k×k stride-2 transposed convs, D k×k
    stride-2 convs and a dense logit; width min(maxFilters, f·res/(2s)) at side s; batch
    norm (no bias before it) or spectral norm (torch's, one power iteration) as configured."""
    if spec["kind"] == "mlp":
        h, w, c = spec["shape"]
        out = h * w * c
        g, d, width = [], [nn.Flatten()], spec["latent"]
        for n in spec["gHidden"]:
            g += [nn.Linear(width, n), nn.ReLU()]
            width = n
        g += [nn.Linear(width, out), nn.Tanh(), nn.Unflatten(1, (c, h, w))]
        width = out
        for n in spec["dHidden"]:
            d += [nn.Linear(width, n), nn.LeakyReLU(LEAK)]
            width = n
        d += [nn.Linear(width, 1)]
        return nn.Sequential(*g), nn.Sequential(*d)
    res, ch, k = spec["res"], spec["channels"], spec["kernel"]
    base = 7 if res == 28 else 4
    sides = []
    s = base
    while s <= res:
        sides.append(s)
        s *= 2

    def width(f, side):
        return min(spec["maxFilters"], max(1, round(f * res / (2 * side))))

    # Stride-2 'same' padding as tfjs pads it (the odd pixel at the end): output side ×2 or ÷2.
    pad, out_pad = (k - 1) // 2, (k - 2) % 2 if k > 2 else 0
    g_batch, d_batch, d_spec = spec["gNorm"] == "batch", spec["dNorm"] == "batch", spec["dNorm"] == "spectral"
    w0 = width(spec["gFilters"], base)
    g = [nn.Linear(spec["latent"], base * base * w0, bias=not g_batch), nn.Unflatten(1, (w0, base, base))]
    if g_batch:
        g.append(nn.BatchNorm2d(w0, eps=1e-5, momentum=0.1))
    g.append(nn.ReLU())
    for side in sides[1:]:
        last = side == res
        in_c, out_c = width(spec["gFilters"], side // 2), ch if last else width(spec["gFilters"], side)
        g.append(nn.ConvTranspose2d(in_c, out_c, k, 2, padding=pad, output_padding=out_pad,
                                    bias=last or not g_batch))
        if last:
            g.append(nn.Tanh())
        else:
            if g_batch:
                g.append(nn.BatchNorm2d(out_c, eps=1e-5, momentum=0.1))
            g.append(nn.ReLU())
    sn = nn.utils.spectral_norm if d_spec else (lambda m: m)
    d = []
    down = sides[::-1]
    for i, side in enumerate(down[1:]):
        first = i == 0
        in_c = ch if first else width(spec["dFilters"], side * 2)
        out_c = width(spec["dFilters"], side)
        norm = not first and d_batch
        d.append(sn(nn.Conv2d(in_c, out_c, k, 2, padding=pad, bias=not norm)))
        if norm:
            d.append(nn.BatchNorm2d(out_c, eps=1e-5, momentum=0.1))
        d.append(nn.LeakyReLU(LEAK))
    d += [nn.Flatten(), sn(nn.Linear(base * base * width(spec["dFilters"], base), 1))]
    return nn.Sequential(*g), nn.Sequential(*d)


class Stepper:
    """One model's training step, as measure() runs it, kept warm between calls."""

    def __init__(self, g, d, batch, real_shape, device="cpu", ema_beta=None):
        torch.manual_seed(1)
        self.g, self.d = g.to(device), d.to(device)
        self.device, self.batch, self.latent = device, batch, g[0].in_features
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        # Real samples stand in for the dataset: the step's cost does not depend on their values.
        self.real = torch.rand(batch, *real_shape, device=device) * 2 - 1
        self.ema_beta = ema_beta
        self.ema = [p.detach().clone() for p in self.g.parameters()] if ema_beta else None

    def step(self):
        g, d, batch = self.g, self.d, self.batch
        # D phase: real and fake through D, softplus losses (BCE on logits), Adam on D only.
        z = torch.randn(batch, self.latent, device=self.device)
        with torch.no_grad():
            fake = g(z)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = F.softplus(-d(self.real)).mean() + F.softplus(d(fake)).mean()
        loss_d.backward()
        self.opt_d.step()
        # G phase: fresh noise through G and the frozen D (non-saturating), Adam on G only.
        for p in d.parameters():
            p.requires_grad_(False)
        z = torch.randn(batch, self.latent, device=self.device)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g = F.softplus(-d(g(z))).mean()
        loss_g.backward()
        self.opt_g.step()
        for p in d.parameters():
            p.requires_grad_(True)
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema, g.parameters()):
                    e.lerp_(p, 1 - self.ema_beta)

    def timed(self, steps):
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            times.append((time.perf_counter() - t0) * 1000)
        return times


def serve(specs):
    """The interleaved comparison's PyTorch side (see the module's doc)."""
    steppers = {}
    for name, spec in specs.items():
        g, d = twin(spec)
        h, w, c = spec["shape"]
        st = Stepper(g, d, spec["batch"], (c, h, w), ema_beta=spec.get("emaBeta"))
        st.timed(spec.get("warmup", 2))
        steppers[name] = st
    print(json.dumps({"ready": {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_name(),
        "corename": openblas_corename(),
        "params": {n: {"G": sum(p.numel() for p in s.g.parameters()),
                       "D": sum(p.numel() for p in s.d.parameters())} for n, s in steppers.items()},
    }}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        times = steppers[req["model"]].timed(int(req["steps"]))
        print(json.dumps({"model": req["model"], "stepMs": [round(t, 3) for t in times]}), flush=True)


def openblas_corename():
    """openblas_get_corename() of the OpenBLAS this process loaded (the kernel it runs), or None."""
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "blas" in line.split()[-1].rsplit("/", 1)[-1]})
    for path in paths:
        try:
            fn = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        return fn().decode()
    return None


def measure(name, steps, warmup, batch, device="cpu"):
    build = MODELS[name][0]
    torch.manual_seed(1)
    g, d = build()
    g, d = g.to(device), d.to(device)
    cuda = device.startswith("cuda")
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    # Real samples stand in for MNIST: the step's cost does not depend on their values.
    real = torch.rand(batch, 1, 28, 28, device=device) * 2 - 1

    def step():
        # D phase: real and fake through D, softplus losses (BCE on logits), Adam on D only.
        z = torch.randn(batch, LATENT, device=device)
        with torch.no_grad():
            fake = g(z)
        opt_d.zero_grad(set_to_none=True)
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        loss_d.backward()
        opt_d.step()
        # G phase: fresh noise through G and the frozen D (non-saturating), Adam on G only.
        for p in d.parameters():
            p.requires_grad_(False)
        z = torch.randn(batch, LATENT, device=device)
        opt_g.zero_grad(set_to_none=True)
        loss_g = F.softplus(-d(g(z))).mean()
        loss_g.backward()
        opt_g.step()
        for p in d.parameters():
            p.requires_grad_(True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()  # the step's kernels are done, as a tfjs readback would be
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "model": name,
        "params": {
            "G": sum(p.numel() for p in g.parameters()),
            "D": sum(p.numel() for p in d.parameters()),
        },
        "batch": batch,
        "warmup": warmup,
        "stepMs": [round(t, 3) for t in times],
        "medianMs": statistics.median(times),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,dcgan")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--serve", metavar="SPECS_JSON")
    args = ap.parse_args()
    if args.serve:
        torch.set_num_threads(1)
        serve(json.loads(args.serve))
        return
    results = []
    for name in args.models.split(","):
        _, steps, warmup = MODELS[name]
        results.append(
            measure(
                name,
                args.steps if args.steps is not None else steps,
                args.warmup if args.warmup is not None else warmup,
                args.batch,
                args.device,
            )
        )
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "blas": blas_name(),
        "results": results,
    }))


def blas_name():
    """The BLAS torch was built for and the library actually loaded (Debian's torch is built
    against the generic libblas.so.3, which may resolve to the reference BLAS or OpenBLAS)."""
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    built = re.search(r"BLAS_INFO=([^,]+)", torch.__config__.show())
    loaded = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "blas" in path.rsplit("/", 1)[-1]:
                    loaded.add(os.path.realpath(path))
    except OSError:
        pass
    return f"built for {built.group(1) if built else 'unknown'}, loaded {', '.join(sorted(loaded)) or 'unknown'}"


if __name__ == "__main__":
    main()
