"""One stage-1 step in numpy (f32), the same math as `mim bench`'s stage1_step:
Z = X Wᵀ (b = 0), f = logcosh(Z) a, R = clamp(f − y, ±1) (Huber δ = 1),
G = [tanh(Z) ⊙ R ⊙ a]ᵀ X / n, W ← W − η(G + βW) with η = β = 1, rows rescaled to 1e-3.
Also times a 2048³ f32 matmul (numpy's BLAS, e.g. OpenBLAS) as a second SGEMM reference.
Prints JSON: {"peer": "numpy", "d":…, "n":…, "m":…, "median_ms":…, "sgemm_gflops":…}."""
import json, sys, time
import numpy as np

def step(X, y, W, a):
    Z = X @ W.T
    aZ = np.abs(Z)
    f = (aZ + np.log1p(np.exp(-2 * aZ)) - np.float32(np.log(2))) @ a
    r = np.clip(f - y, -1, 1)
    G = (np.tanh(Z) * (r[:, None] * a[None, :])).T @ X / X.shape[0]
    W = W - (G + W)
    return W / np.linalg.norm(W, axis=1, keepdims=True) * np.float32(1e-3)

def main(d, n, m, reps):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    W = rng.standard_normal((m, d), dtype=np.float32) * np.float32(1e-3 / np.sqrt(d))
    a = np.where(np.arange(m) < m // 2, 1, -1).astype(np.float32)
    step(X, y, W, a)
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        step(X, y, W, a)
        runs.append((time.perf_counter() - t) * 1e3)
    k = 2048
    A = rng.standard_normal((k, k), dtype=np.float32)
    A @ A
    sg = []
    for _ in range(max(reps, 3)):
        t = time.perf_counter()
        A @ A
        sg.append(time.perf_counter() - t)
    print(json.dumps({"peer": "numpy", "d": d, "n": n, "m": m, "median_ms": float(np.median(runs)),
                      "sgemm_gflops": 2 * k**3 / float(np.median(sg)) / 1e9}))

if __name__ == "__main__":
    d, n, m, reps = (int(v) for v in sys.argv[1:5])
    main(d, n, m, reps)
