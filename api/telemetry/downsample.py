"""Largest-Triangle-Three-Buckets (LTTB) downsampling of one series, for charts.

LTTB (Steinarsson, 2013) keeps the first and the last point and, from each of `threshold - 2` equal
slices of the points between, the one that forms the largest triangle with the point kept before it and
the average of the next slice. Peaks and dips survive, which a plain average or every-n-th point loses;
and every point returned is a real sample, not an interpolation. Slices are cut in integer arithmetic,
so no slice is ever empty and the result never exceeds `threshold`.

Pure: indices in, indices out; the caller maps them back to its samples.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_THRESHOLD = 2  # the first and the last point


def lttb(xs: Sequence[float], ys: Sequence[float], threshold: int) -> list[int]:
    """Indices (ascending) of at most `threshold` points of the series (xs[i], ys[i]) that keep its shape.

    `xs` must be non-decreasing (time); `threshold` at least 2. Fewer points than `threshold` are all kept.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} and {len(ys)}")
    if threshold < MIN_THRESHOLD:
        raise ValueError(f"threshold must be at least {MIN_THRESHOLD}, not {threshold}")
    n = len(xs)
    if n <= threshold:
        return list(range(n))
    slices = threshold - 2
    inner = n - 2  # points between the first and the last; more than `slices`, since n > threshold

    def bounds(k: int) -> tuple[int, int]:
        return 1 + k * inner // slices, 1 + (k + 1) * inner // slices

    kept = [0]
    previous = 0
    for k in range(slices):
        start, end = bounds(k)
        # The next slice's average; after the last slice, the last point itself.
        next_start, next_end = bounds(k + 1) if k + 1 < slices else (n - 1, n)
        span = next_end - next_start
        avg_x = sum(xs[next_start:next_end]) / span
        avg_y = sum(ys[next_start:next_end]) / span
        ax, ay = xs[previous], ys[previous]
        best, best_area = start, -1.0
        for i in range(start, end):
            # Twice the triangle's area; the factor does not change which is largest.
            area = abs((ax - avg_x) * (ys[i] - ay) - (ax - xs[i]) * (avg_y - ay))
            if area > best_area:
                best, best_area = i, area
        kept.append(best)
        previous = best
    kept.append(n - 1)
    return kept
