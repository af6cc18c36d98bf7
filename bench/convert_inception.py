"""Converts pytorch-fid's Inception-v3 weights (a PyTorch state dict, e.g.
pt_inception-2015-12-05-6726825d.pth from
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth)
into the safetensors file `agon eval --inception FILE` reads: every floating-point tensor
of the state dict, as float32 little-endian, under its state-dict name
(`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...; layout as PyTorch
keeps it, [out, in, kh, kw] for kernels). Integer entries (`num_batches_tracked`) are left
out. Needs only torch (to unpickle the .pth); writes the safetensors layout itself: an
8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}},
then the tensors' bytes.

usage: python3 bench/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors

Shipped in the npm package: in a project that installed agon the path is
node_modules/agon/bench/convert_inception.py. The python3 must have torch (Debian /
Ubuntu: apt-get install python3-torch, then /usr/bin/python3). See docs/QUALITY.md,
"Getting the Inception weights".
"""

import hashlib
import json
import struct
import sys

try:
    import torch
except ImportError:
    sys.exit(
        f"convert_inception.py needs torch, which {sys.executable} lacks: use a python3 that has it"
        " (Debian / Ubuntu: apt-get install python3-torch, then /usr/bin/python3)"
    )


def state_dict_to_safetensors(state_dict, out_path, metadata=None):
    """Writes the floating-point tensors of `state_dict` to `out_path` as F32 safetensors."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(state_dict):
        t = state_dict[name]
        if not torch.is_tensor(t) or not t.is_floating_point():
            continue
        data = t.detach().to(torch.float32).contiguous().cpu().numpy().astype("<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    # Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for b in blobs:
            f.write(b)


def main():
    if len(sys.argv) != 3:
        sys.exit(
            "usage: python3 convert_inception.py IN.pth OUT.safetensors"
            " (a python3 with torch; see docs/QUALITY.md, Getting the Inception weights)"
        )
    src, dst = sys.argv[1], sys.argv[2]
    try:
        with open(src, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except OSError as err:
        sys.exit(f"cannot read {src}: {err.strerror}")
    try:
        # weights_only: unpickle tensors and containers only, never arbitrary objects.
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable input is one line
        sys.exit(f"{src} is not a readable PyTorch state dict: {type(err).__name__}: {err}")
    if not isinstance(state, dict):
        sys.exit(f"{src} is not a PyTorch state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if "Conv2d_1a_3x3.conv.weight" not in state or "Mixed_7c.branch_pool.bn.running_var" not in state:
        sys.exit(f"{src} is not a pytorch-fid Inception-v3 state dict (no Conv2d_1a_3x3 / Mixed_7c tensors)")
    state_dict_to_safetensors(
        state, dst, {"format": "pytorch-fid-inception-v3", "source_sha256": digest}
    )
    print(f"wrote {dst} from {src} (sha256 {digest[:16]}...)")


if __name__ == "__main__":
    main()
