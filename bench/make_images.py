"""Make an image-sized data set offline: the digits, upsampled to 28 x 28, shifted and noisy.

    .venv/bin/python bench/make_images.py [-o build/data/digits28.npz] [--train 3500] [--test 1500]

Each sample is one of scikit-learn's 1,797 8 x 8 digits, upsampled to 28 x 28 (cubic spline,
``scipy.ndimage.zoom``), shifted by up to 2 pixels in each direction, with Gaussian pixel noise
(sigma 0.05) and clipped to [0, 1]: 784 grey-scale inputs with a constant background of 0, as
MNIST's. The draw is seeded, so the file is the same on every machine. Training and test samples
come from disjoint halves of the original digits (no test image is a shifted training image).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits

from sigprop_fpga.io import write_atomic


def make(n_train: int, n_test: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    d = load_digits()
    imgs = d.images / 16.0
    order = rng.permutation(len(imgs))
    half = len(order) * 7 // 10
    pools = {"train": order[:half], "test": order[half:]}
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        idx = rng.choice(pools[split], size=n, replace=True)
        x = np.empty((n, 28 * 28))
        for k, i in enumerate(idx):
            big = ndimage.zoom(imgs[i], 28 / 8, order=3)
            dy, dx = rng.integers(-2, 3, size=2)
            big = ndimage.shift(big, (dy, dx), order=0, mode="constant", cval=0.0)
            big = big + rng.normal(0.0, 0.05, size=big.shape) * (big > 0.02)
            x[k] = np.clip(big, 0.0, 1.0).reshape(-1)
        out[f"x_{split}"], out[f"y_{split}"] = x, d.target[idx].astype(np.int64)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default="build/data/digits28.npz")
    ap.add_argument("--train", type=int, default=3500)
    ap.add_argument("--test", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    arrays = make(args.train, args.test, args.seed)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(Path(args.out), buf.getvalue())
    print(f"wrote {args.out}: {args.train} training and {args.test} test samples of 784 inputs in [0, 1]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
