"""joblib (loky, 2 workers) on the P1-P4 workloads; prints JSON of median milliseconds."""
import json
import sys
import time
from math import sqrt

import numpy as np
from joblib import Parallel, delayed
from timing import measure


def spin(n):
    x = 0.0
    for i in range(n):
        x = (x + i ** 0.5) % 1000
    return x


def nap(i):
    time.sleep(1.5 if i == 1 else 0.01)
    return i


def calibrate(target_ms=10.0):
    n = 20000
    spin(n)
    t = time.perf_counter()
    spin(n)
    per = (time.perf_counter() - t) / n
    return max(1, int(target_ms / 1000 / per))


def main():
    which = sys.argv[1]
    out = {}
    if which == "p5":
        # n tiny tasks, consumed as they come when this joblib has return_as="generator" (1.3+).
        import inspect
        n = int(sys.argv[2])
        generator = "return_as" in inspect.signature(Parallel).parameters
        t = time.perf_counter()
        with Parallel(n_jobs=2, **({"return_as": "generator"} if generator else {})) as parallel:
            count = sum(1 for _ in parallel(delayed(sqrt)(x * x) for x in range(n)))
        out["ms"] = (time.perf_counter() - t) * 1000
        # VmHWM: ru_maxrss would carry over the parent's peak across exec.
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        out["maxRssMb"] = int(hwm.split()[1]) / 1024
        out["generator"] = generator
        out["count"] = count
    elif which == "cold":
        # Time to the first result of a 1-item map on a fresh loky pool (this process is fresh).
        t = time.perf_counter()
        Parallel(n_jobs=2)(delayed(sqrt)(i) for i in range(1))
        out["P4"] = (time.perf_counter() - t) * 1000
    else:
        with Parallel(n_jobs=2) as parallel:
            xs = list(range(100_000))
            out["P1"] = measure(3, lambda: parallel(delayed(sqrt)(x * x) for x in xs))
            n = calibrate()
            out["P2"] = measure(3, lambda: parallel(delayed(spin)(n) for _ in range(200)))
            out["P2_sequential"] = measure(1, lambda: [spin(n) for _ in range(200)])
            arrays = [np.random.rand(1_000_000) for _ in range(50)]
            out["P3"] = measure(3, lambda: parallel(delayed(np.sum)(a) for a in arrays))
            # S1: one 1.5 s task among 20 of 10 ms.
            out["S1"] = measure(3, lambda: parallel(delayed(nap)(i) for i in range(21)))
    print(json.dumps(out))


main()
