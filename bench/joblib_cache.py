"""joblib.Memory on C1-C3: hit latency (small int, 1 MB array argument) and miss cost (1 MB result), in microseconds."""
import json
import shutil
import tempfile
import time

import numpy as np
from joblib import Memory

RESULT = np.random.default_rng(1).standard_normal(131072)  # 1 MB


def small(x):
    return x * 2


def summed(a):
    return float(a[0])


def big(i):
    return RESULT


def per_call(f, args, runs):
    t = time.perf_counter()
    for a in args[:runs]:
        f(a)
    return (time.perf_counter() - t) / runs * 1e6


def main():
    location = tempfile.mkdtemp(prefix="ejl-joblib-memory-")
    memory = Memory(location, verbose=0)
    out = {}
    f = memory.cache(small)
    f(7)
    out["C1"] = min(per_call(f, [7] * 2000, 2000) for _ in range(3))
    g = memory.cache(summed)
    array = np.random.default_rng(2).standard_normal(131072)
    g(array)
    out["C2"] = min(per_call(g, [array] * 300, 300) for _ in range(3))
    h = memory.cache(big)
    out["C3"] = per_call(h, list(range(200)), 200)
    shutil.rmtree(location, ignore_errors=True)
    print(json.dumps(out))


main()
