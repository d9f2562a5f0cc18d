"""This CPU's measured matrix-multiply peak, the roofline's ceiling: a 4096^3 product in bf16 and in fp32,
median of 5 after 2 warm-ups, with the given threads.

    python benchmarks/matmul_peak.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--n", type=int, default=4096)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    for dtype in (torch.bfloat16, torch.float32):
        x, y = torch.randn(a.n, a.n, dtype=dtype), torch.randn(a.n, a.n, dtype=dtype)
        for _ in range(2):
            x @ y
        times = []
        for _ in range(5):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        median = sorted(times)[2]
        print(f"{dtype}: {2 * a.n**3 / median / 1e9:.0f} GFLOP/s ({a.n}^3, median of 5, {a.threads} threads)")


if __name__ == "__main__":
    main()
