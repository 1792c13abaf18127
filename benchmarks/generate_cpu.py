"""Time `gankernels.generate` on the CPU: loading an NVlabs snapshot pickle of a 256x256 StyleGAN2 (G, D, G_ema,
written the way tests/generate builds NVlabs pickles, with our networks' weights), and sampling from it.

    PYTHONPATH=$PWD python benchmarks/generate_cpu.py [--images 8] [--batch 8]
"""

import argparse
import os
import tempfile
import time

import torch

from gankernels import generate
from gankernels.models import load_nvlabs_pickle
from gankernels.models import stylegan2 as sg2
from tests.generate.conftest import _wrap, write_nvlabs_pickle

# NVlabs' stylegan2-ada-pytorch "paper256" configuration: 8-layer mapping, channel_base 16384, channel_max 512.
G_KWARGS = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=8),
                channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)  # fmt: skip
D_KWARGS = dict(c_dim=0, img_resolution=256, img_channels=3, channel_base=16384, channel_max=512, num_fp16_res=4,
                conv_clamp=256)  # fmt: skip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    G = sg2.Generator(**G_KWARGS).eval().requires_grad_(False)
    D = sg2.Discriminator(**D_KWARGS).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "network-snapshot-000000.pkl")
        # a whole snapshot: G, G_ema and D (write_nvlabs_pickle writes G and G_ema; D goes in as a third network)
        write_nvlabs_pickle(path, G, G_KWARGS, D=_wrap(D, D_KWARGS, "pass\n"))
        size = os.path.getsize(path) / 2**20
        params = sum(p.numel() for p in G.parameters()) / 1e6
        print(f"pickle {size:.0f} MiB (G {params:.1f} M parameters, G_ema, D)")
        loaders = (("load_nvlabs_pickle (G, D, G_ema)", lambda: load_nvlabs_pickle(path)),
                   ("load_generator (G_ema)", lambda: generate.load_generator(path, device="cpu")))  # fmt: skip
        for name, load in loaders:
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                net = load()
                times.append(time.perf_counter() - t)
            print(f"{name}: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s")
        net = generate.load_generator(path, device="cpu")
        generate.sample(net, [0], batch_size=1)  # warm-up
        t = time.perf_counter()
        images = generate.sample(net, range(args.images), batch_size=args.batch)
        dt = time.perf_counter() - t
        print(f"sample {args.images} images {tuple(images.shape[1:])} in batches of {args.batch}: {dt:.2f} s "
              f"({dt / args.images:.2f} s per image), torch threads {torch.get_num_threads()}")  # fmt: skip


if __name__ == "__main__":
    main()
