"""joblib.dump/load and joblib.hash on the D1-D3 and H1 workloads; prints JSON (ms, bytes)."""
import json
import os
import sys
import tempfile

import joblib
import numpy as np
from timing import measure


def main():
    out = {}
    directory = tempfile.mkdtemp(prefix="ejl-joblib-")
    # The benchmark passes the bytes of its own walk, so that both sides store the same data.
    if len(sys.argv) > 1:
        walk = np.fromfile(sys.argv[1], dtype=np.float64)
    else:
        walk = np.cumsum(np.random.default_rng(42).standard_normal(10_000_000))
    names = [f"name-{i}" for i in range(1000)]
    records = [{"id": i, "name": names[i % 1000], "score": (i * 7919 % 10007) / 10007} for i in range(1_000_000)]
    cases = {
        "D1": (walk, None, 5),
        "D2": (records, None, 3),
        "D3_D1_zlib3": (walk, ("zlib", 3), 3),
        "D3_D2_zlib3": (records, ("zlib", 3), 3),
        # compress="lz4" is what a joblib user asking for speed writes: lz4's fast mode (level None).
        # ("lz4", 3) would be lz4's slow high-compression mode, which is no peer of a fast setting.
        "D3_D1_lz4": (walk, "lz4", 3),
        "D3_D2_lz4": (records, "lz4", 3),
    }
    for name, (value, compress, runs) in cases.items():
        path = os.path.join(directory, name + ".pkl")
        kwargs = {} if compress is None else {"compress": compress}
        try:
            out[name + "_dump"] = measure(runs, lambda: joblib.dump(value, path, **kwargs))
            out[name + "_load"] = measure(runs, lambda: joblib.load(path))
            out[name + "_bytes"] = os.path.getsize(path)
        except Exception as error:  # lz4 missing, for instance
            out[name + "_error"] = str(error)
    out["H1_hash"] = measure(3, lambda: joblib.hash(walk))
    small = [{"id": i, "name": names[i % 1000], "score": 0.5} for i in range(100_000)]
    out["H1_small"] = measure(1, lambda: [joblib.hash(o) for o in small])
    print(json.dumps(out))


main()
