"""PyTorch CPU twin of `npm run bench -- step`: the same MLP GAN and DCGAN (shapes of
shared/models.ts), non-saturating loss, Adam, batch 64; times one full step (D phase + G
phase) and prints one JSON object. Run by bench/step.ts; needs only torch.

usage: python3 bench/torch_step.py [--models mlp,dcgan] [--steps N] [--warmup N] [--batch B]
                                   [--device cpu|cuda]
(bench/gpu.sh runs it with --device cuda beside the webgpu/tensorflow cells.)
"""

import argparse
import json
import os
import re
import statistics
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
    args = ap.parse_args()
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
