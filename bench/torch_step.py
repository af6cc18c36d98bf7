"""PyTorch CPU twin of `npm run bench -- step`: the same MLP GAN and DCGAN (shapes of
shared/models/), non-saturating loss, and (in --serve) the resnet with rpgan + R1/R2; Adam, batch 64; times one full step (D phase + G
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
import subprocess
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


class Blur(nn.Module):
    """[1, 2, 1] (x) [1, 2, 1] / 16 on each channel, zero-padded (resnet.ts blur)."""

    def __init__(self, c):
        super().__init__()
        t = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("k", ((t[:, None] * t[None, :]) / 16).expand(c, 1, 3, 3).clone())
        self.c = c

    def forward(self, x):
        return F.conv2d(x, self.k, padding=1, groups=self.c)


class Up(nn.Module):
    """Nearest-neighbour 2x, then the blur (resnet.ts upsample)."""

    def __init__(self, c):
        super().__init__()
        self.blur = Blur(c)

    def forward(self, x):
        return self.blur(F.interpolate(x, scale_factor=2, mode="nearest"))


class Down(nn.Module):
    """The blur, then the mean of each 2x2 block (resnet.ts downsample)."""

    def __init__(self, c):
        super().__init__()
        self.blur = Blur(c)

    def forward(self, x):
        return F.avg_pool2d(self.blur(x), 2)


class BiasedAct(nn.Module):
    """LeakyReLU(0.2) of x plus a per-channel bias (R3GAN's BiasedActivation)."""

    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.leaky_relu(x + self.bias[None, :, None, None], LEAK)


class Block(nn.Module):
    """x + conv1x1(act(conv3x3(act(conv1x1(x))))), no conv biases (resnet.ts residualBlock)."""

    def __init__(self, c, expansion):
        super().__init__()
        inner = max(1, int(c * expansion + 0.5))
        self.f = nn.Sequential(
            nn.Conv2d(c, inner, 1, bias=False), BiasedAct(inner),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False), BiasedAct(inner),
            nn.Conv2d(inner, c, 1, bias=False),
        )

    def forward(self, x):
        return x + self.f(x)


class Basis(nn.Module):
    """G's input: a learned base x base x W0 map scaled per channel by a linear map of z."""

    def __init__(self, latent, w0, base):
        super().__init__()
        self.in_features = latent
        self.linear = nn.Linear(latent, w0, bias=False)
        self.const = nn.Parameter(torch.randn(w0, base, base))

    def forward(self, z):
        return self.linear(z)[:, :, None, None] * self.const[None]


class DBasis(nn.Module):
    """D's head: a per-channel base x base weighting summed over the map, then a linear logit."""

    def __init__(self, w0, base):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(w0, base, base) / base)
        self.head = nn.Linear(w0, 1, bias=False)

    def forward(self, x):
        return self.head((x * self.kernel[None]).sum((2, 3)))


def resnet(spec):
    """shared/models/resnet.ts's G and D (unconditional): stages of `blocks` residual blocks at
    the widths `spec["widths"]` (G's order, smallest map first), 1x1 convs where the width
    changes, blur + nearest / blur + 2x2 mean resampling."""
    widths, blocks, e, ch = spec["widths"], spec["blocks"], spec["expansion"], spec["shape"][2]
    base = 7 if spec["shape"][0] % 7 == 0 else 4
    g = [Basis(spec["latent"], widths[0], base)] + [Block(widths[0], e) for _ in range(blocks)]
    for i in range(1, len(widths)):
        if widths[i] != widths[i - 1]:
            g.append(nn.Conv2d(widths[i - 1], widths[i], 1, bias=False))
        g += [Up(widths[i])] + [Block(widths[i], e) for _ in range(blocks)]
    g.append(nn.Conv2d(widths[-1], ch, 1, bias=False))
    last = len(widths) - 1
    d = [nn.Conv2d(ch, widths[last], 1, bias=False)]
    for i in range(last, -1, -1):
        d += [Block(widths[i], e) for _ in range(blocks)]
        if i == 0:
            break
        d.append(Down(widths[i]))
        if widths[i - 1] != widths[i]:
            d.append(nn.Conv2d(widths[i], widths[i - 1], 1, bias=False))
    d.append(DBasis(widths[0], base))
    return nn.Sequential(*g), nn.Sequential(*d)


def twin(spec):
    """G and D of an Agon model from its shape (bench/step.ts torchSpec):
    {"kind": "mlp", "latent", "gHidden", "dHidden", "shape": [h, w, c]} — ReLU in G, tanh out,
    LeakyReLU 0.2 in D; or {"kind": "dcgan", "latent", "res", "channels", "gFilters",
    "dFilters", "maxFilters", "kernel", "gNorm", "dNorm"} — shared/models/dcgan.ts's layout:
    G dense to base×base (7 for 28 px, else 4) then k×k stride-2 transposed convs, D k×k
    stride-2 convs and a dense logit; width min(maxFilters, f·res/(2s)) at side s; batch
    norm (no bias before it) or spectral norm (torch's, one power iteration) as configured;
    or {"kind": "resnet", "latent", "shape", "widths", "blocks", "expansion"} — see resnet()."""
    if spec["kind"] == "resnet":
        return resnet(spec)
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

    def __init__(self, g, d, batch, real_shape, device="cpu", ema_beta=None, loss=None):
        torch.manual_seed(1)
        self.g, self.d = g.to(device), d.to(device)
        self.device, self.batch, self.latent = device, batch, g[0].in_features
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        # Real samples stand in for the dataset: the step's cost does not depend on their values.
        self.real = torch.rand(batch, *real_shape, device=device) * 2 - 1
        self.ema_beta = ema_beta
        self.ema = [p.detach().clone() for p in self.g.parameters()] if ema_beta else None
        # None: non-saturating; {"name": "rpgan", "r1", "r2", "regEvery"}: the relativistic pair
        # loss with R1/R2 on every regEvery-th D phase, scaled by regEvery (as shared/microtask.ts).
        self.loss = loss
        self.d_phases = 0

    def step(self):
        if self.loss is not None:
            self.step_rpgan()
        else:
            self.step_non_saturating()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema, self.g.parameters()):
                    e.lerp_(p, 1 - self.ema_beta)

    def step_rpgan(self):
        g, d, batch, loss = self.g, self.d, self.batch, self.loss
        reg = self.d_phases % loss["regEvery"] == 0
        self.d_phases += 1
        # D phase: softplus(D(fake) - D(real)), plus R1 (reals) and R2 (fakes) as R3GAN's
        # trainer computes them, on the same forward pass (Agon runs D again for each).
        z = torch.randn(batch, self.latent, device=self.device)
        with torch.no_grad():
            fake = g(z)
        real = self.real.detach().requires_grad_(reg)
        fake.requires_grad_(reg)
        self.opt_d.zero_grad(set_to_none=True)
        out_r, out_f = d(real), d(fake)
        loss_d = F.softplus(out_f - out_r).mean()
        if reg:
            gr, gf = torch.autograd.grad([out_r.sum(), out_f.sum()], [real, fake], create_graph=True)
            k = loss["regEvery"] / 2
            loss_d = loss_d + k * loss["r1"] * gr.square().sum((1, 2, 3)).mean()
            loss_d = loss_d + k * loss["r2"] * gf.square().sum((1, 2, 3)).mean()
        loss_d.backward()
        self.opt_d.step()
        # G phase: softplus(D(real) - D(fake)) with D frozen; D(real) needs no gradient.
        for p in d.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            out_r = d(self.real)
        z = torch.randn(batch, self.latent, device=self.device)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g = F.softplus(out_r - d(g(z))).mean()
        loss_g.backward()
        self.opt_g.step()
        for p in d.parameters():
            p.requires_grad_(True)

    def step_non_saturating(self):
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
        st = Stepper(g, d, spec["batch"], (c, h, w), ema_beta=spec.get("emaBeta"), loss=spec.get("loss"))
        st.timed(spec.get("warmup", 2))
        steppers[name] = st
    print(json.dumps({"ready": {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_name(),
        "corename": openblas_corename(),
        "onednn": onednn_kernel(),
        "params": {n: {"G": sum(p.numel() for p in s.g.parameters()),
                       "D": sum(p.numel() for p in s.d.parameters())} for n, s in steppers.items()},
    }}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        times = steppers[req["model"]].timed(int(req["steps"]))
        print(json.dumps({"model": req["model"], "stepMs": [round(t, 3) for t in times]}), flush=True)


def onednn_kernel():
    """The ISA oneDNN runs here and the implementation it picks for a DCGAN-like strided conv
    (PyTorch's CPU convolutions go to oneDNN, not OpenBLAS; DNNL_MAX_CPU_ISA caps the ISA),
    from its verbose lines in a child process with this environment; None without oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return None
    code = ("import torch; torch.set_num_threads(1); torch.nn.functional.conv2d("
            "torch.ones(8, 32, 16, 16), torch.ones(64, 32, 4, 4), stride=2, padding=1)")
    try:
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DNNL_VERBOSE": "1"},
                             capture_output=True, text=True, timeout=300).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return {"isa": None, "conv": None}
    isa = next((l.split("isa:", 1)[1].strip() for l in out if ",info,cpu,isa:" in l), None)
    conv = next((l.split(",")[4] for l in out if ",exec,cpu,convolution," in l), None)
    return {"isa": isa, "conv": conv}


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
