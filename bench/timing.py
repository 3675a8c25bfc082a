"""Timing helper shared by the Python peer benchmarks."""
import statistics
import time


def measure(runs, f):
    """Median milliseconds of `runs` calls of `f`, after one untimed call."""
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)
