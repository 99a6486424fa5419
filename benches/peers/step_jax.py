"""One stage-1 step in JAX (jit, CPU, f32); the same math as step_numpy.py.
Prints JSON: {"peer": "jax", "d":…, "n":…, "m":…, "median_ms":…}."""
import json, sys, time
import numpy as np
import jax
import jax.numpy as jnp

@jax.jit
def step(X, y, W, a):
    Z = X @ W.T
    aZ = jnp.abs(Z)
    f = (aZ + jnp.log1p(jnp.exp(-2 * aZ)) - jnp.log(2.0).astype(jnp.float32)) @ a
    r = jnp.clip(f - y, -1, 1)
    G = (jnp.tanh(Z) * (r[:, None] * a[None, :])).T @ X / X.shape[0]
    W = W - (G + W)
    return W / jnp.linalg.norm(W, axis=1, keepdims=True) * 1e-3

def main(d, n, m, reps):
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.standard_normal((n, d), dtype=np.float32))
    y = jnp.asarray(rng.standard_normal(n, dtype=np.float32))
    W = jnp.asarray(rng.standard_normal((m, d), dtype=np.float32) * np.float32(1e-3 / np.sqrt(d)))
    a = jnp.asarray(np.where(np.arange(m) < m // 2, 1, -1).astype(np.float32))
    step(X, y, W, a).block_until_ready()
    runs = []
    for _ in range(reps):
        t = time.perf_counter()
        step(X, y, W, a).block_until_ready()
        runs.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"peer": "jax", "d": d, "n": n, "m": m, "median_ms": float(np.median(runs))}))

if __name__ == "__main__":
    d, n, m, reps = (int(v) for v in sys.argv[1:5])
    main(d, n, m, reps)
