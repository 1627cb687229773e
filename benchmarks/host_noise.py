"""How steady this machine's CPU is: one fixed workload timed over and over.

A fixed 1-thread convolution (about a ResNet stage's work) is run in
back-to-back chunks of `--chunk` seconds for `--seconds`; each chunk's speed
is compared with the median chunk's. On a quiet dedicated core every chunk is
within a few % of the median; a shared VM shows slow periods (host
contention, frequency changes) that no timing protocol inside the guest can
remove. This is the floor under the quiet phase's pass-to-pass spread
(benchmarks/timing_spread.py, docs/FIDELITY.md E14).

    python benchmarks/host_noise.py                 # 120 s of 0.5-s chunks
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def chunk_rates(seconds: float, chunk: float) -> list[float]:
    """Workload iterations per second, one value per chunk of `chunk` seconds."""
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.rand(1, 64, 56, 56)
    rates, end = [], time.perf_counter() + seconds
    with torch.inference_mode():
        conv(x)
        while time.perf_counter() < end:
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < chunk:
                conv(x)
                count += 1
            rates.append(count / (time.perf_counter() - start))
    return rates


def longest_run(flags: list[bool]) -> int:
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--chunk", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates = chunk_rates(args.seconds, args.chunk)
    median = statistics.median(rates)
    slowdown = [median / rate - 1 for rate in rates]  # 0.25: the chunk took 25% longer than the median one
    print(f"{len(rates)} chunks of {args.chunk} s, {args.threads} thread(s); slowdown against the median chunk:")
    for limit in (0.02, 0.05, 0.10, 0.20):
        slow = [s > limit for s in slowdown]
        print(f"  > {limit:4.0%}: {sum(slow) / len(slow):6.1%} of chunks, longest stretch "
              f"{longest_run(slow) * args.chunk:5.1f} s")
    print(f"  worst chunk: +{max(slowdown):.0%}; fastest: {min(slowdown):+.0%}")


if __name__ == "__main__":
    main()
