"""The spectral estimator's cost against numpy in the same run (issue 14, seed 003).

    python3 benches/peers/spectral.py [--mim target/release/mim] [--d 500] [--n 100000] [--reps 3]

mim: `mim spectral` (dense method: (1/n) Xᵀ diag(T) X accumulated in f64 blocks of 512 rows,
then faer's self-adjoint eigendecomposition), its `solve_seconds` from summary.json (the data
generation is not counted). numpy: `S = X.T @ (X * y[:, None]) / n` then `np.linalg.eigh(S)` on
the same sizes (f64), timed separately. Prints the medians and mim ÷ numpy. numpy is optional
(pip install numpy); a missing one is reported, not faked. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from numpy's environment as in run.py."""
import argparse, json, os, statistics, subprocess, sys, tempfile

NUMPY = r"""
import sys, time, json
import numpy as np
n, d, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
X = rng.standard_normal((n, d)); y = rng.standard_normal(n)
acc, eig = [], []
for _ in range(reps):
    t = time.perf_counter(); S = X.T @ (X * y[:, None]) / n; acc.append(time.perf_counter() - t)
    t = time.perf_counter(); np.linalg.eigh(S); eig.append(time.perf_counter() - t)
print(json.dumps({"accumulate": sorted(acc)[len(acc) // 2], "eigh": sorted(eig)[len(eig) // 2],
                  "numpy": np.__version__}))
"""

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mim", default=os.environ.get("MIM", "target/release/mim"))
    ap.add_argument("--d", type=int, default=500)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    d, n = args.d, args.n
    here = os.path.dirname(os.path.abspath(__file__))
    cfg = os.path.join(here, "..", "..", "configs", "hierarchical", "cascade.toml")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            out = os.path.join(tmp, f"r{rep}")
            sets = [f"data.d={d}", "data.r=100", "data.link=hierarchical(K=100, gamma=1, g=h2)",
                    f"data.alpha1={n / d}", "data.alpha2=1", "model.width=200", "spectral.k=100",
                    "spectral.method=dense"]
            cmd = [args.mim, "spectral", "--config", cfg, "--out", out, "--quiet"]
            for s in sets:
                cmd += ["--set", s]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times.append(json.load(open(os.path.join(out, "summary.json")))["solve_seconds"])
    mim = statistics.median(times)
    fair = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    p = subprocess.run([sys.executable, "-c", NUMPY, str(n), str(d), str(args.reps)],
                       capture_output=True, text=True, env=fair)
    print(f"d = {d}, n = {n}, f64, {os.cpu_count()} threads available")
    print(f"mim spectral (accumulate + eigen)  {mim:8.3f} s")
    if p.returncode != 0:
        print("numpy                              not available: " + (p.stderr.strip().splitlines() or ["failed"])[-1])
        return
    r = json.loads(p.stdout.strip().splitlines()[-1])
    total = r["accumulate"] + r["eigh"]
    print(f"numpy {r['numpy']:<8} accumulate {r['accumulate']:.3f} s + eigh {r['eigh']:.3f} s = {total:.3f} s")
    print(f"mim ÷ numpy                        {mim / total:8.2f}  (accumulation alone: numpy {r['accumulate']:.3f} s)")

if __name__ == "__main__":
    main()
