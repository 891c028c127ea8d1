"""Rebuild compress/data/mnist5k-*.gz from the shared CSV (run once; the outputs are committed).

Why: the CSV is 1.1 MB gzip of text; the IDX format (MNIST's own) is uint8 and parses in a few lines.
Usage: python tools/build_mnist5k.py ../shared/data/mnist_5k.csv.gz
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "compress" / "data"


def main(csv_path: str) -> None:
    rows = [line.split(",") for line in gzip.open(csv_path, "rt").read().split()]
    pixels = bytes(int(v) for row in rows for v in row[:-1])
    labels = bytes(int(row[-1]) for row in rows)
    n = len(rows)
    # mtime=0 keeps the files byte-identical across rebuilds.
    with gzip.GzipFile(OUT / "mnist5k-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + pixels)
    with gzip.GzipFile(OUT / "mnist5k-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x801, n) + labels)


if __name__ == "__main__":
    main(sys.argv[1])
