"""DLS22's own experiment, for the side-by-side with mim (issue 16).

    python3 benches/peers/dls22.py [--backend auto|jax|numpy] [--seeds 0,1,2,3,4] [--dtype float32|float64]

Where it comes from: Damian, Lee, Soltanolkotabi, "Neural Networks can Learn Representations
with Gradient Descent" (COLT 2022), the authors' code github.com/adamian98/COLT2022, file
`main.py` at commit 54d55ee1dc56a8bb261c4e4ac5324285004891b1 (the repository's only commit,
"Add files via upload"). Their script runs one experiment, PRNGKey(0), and prints the test
loss ("expected value is ~0.096").

Two backends, the same algorithm:
- `jax`: `jax_backend` holds their `experiment` copied verbatim (re-indented into this file;
  the one change: it also returns the λ it chose); it needs `pip install 'jax[cpu]'`.
- `numpy`: `numpy_backend` holds a line-by-line PORT of it to numpy (same structure and
  names), for machines without JAX. What the port changes, and why:
  * random numbers: JAX's threefry keys (jr.PRNGKey / jr.split / jr.normal / jr.rademacher)
    become numpy SeedSequence children (`split`) and PCG64 generators seeded by them
    (`normal`, `rademacher`); a key still regenerates the same batch, so gen_batch(key)
    reuses the n training samples exactly as theirs does (the gradient step and the ridge
    see the SAME n samples). The draws differ from JAX's, so a seed gives a different but
    equally distributed experiment.
  * `jax.grad(loss)(w, x, y)` is written out: for L = mean((relu(x wᵀ + b) a − y)²),
    ∇_w L = (2/n) ((f − y) ⊙ a ⊙ 1[x wᵀ + b > 0])ᵀ x (jax.nn.relu has derivative 0 at 0, so
    does 1[· > 0]).
  * `laxmean` is a Python loop instead of lax.scan; `vmap` over the λ grid is one matrix
    product against all 100 readouts at once (the features of the validation set do not
    depend on λ).
  * dtype: float32 by default, as JAX's default (jax_enable_x64 off); `--dtype float64` for
    a check.
Nothing else is changed: ReLU; w ~ N(0, I/d), b ~ N(0, 1), a Rademacher, symmetrised so that
f ≡ 0 at init (rows m/2.. copy w and b and negate a); C0 = mean(y), C1 = mean(y x) on the
training set and y − C0 − x·C1 everywhere (step, ridge, validation, test); one gradient step
of the square loss, W ← −∇W / rms_j‖∇w_j‖ (the old W dropped, relative row norms kept), b
unchanged; ridge a = (HᵀH/n + λI)⁻¹Hᵀy/n on the raw ReLU features of the same n samples,
no intercept, λ on a grid geomspace(1e-10, 1e15, 100) picked on a fresh validation set of
10⁴; test loss on a fresh test set of 10⁴ minus σ² (the excess risk). Setup as in their
script: f*(z) = He2(z)/√2, d = 100, n = 10⁴, m = 10³, σ² = 1.

Prints one JSON object: per-seed excess risk, chosen λ, wall seconds; mean and sd.
"""
import argparse, json, statistics, sys, time

import numpy as np

COMMIT = "54d55ee1dc56a8bb261c4e4ac5324285004891b1"
SOURCE = "github.com/adamian98/COLT2022 main.py"


# ---------------------------------------------------------------------------------------------
# Their code (JAX), verbatim apart from living inside a function that imports JAX lazily.
# ---------------------------------------------------------------------------------------------
def jax_backend():
    import jax
    from jax import numpy as jnp, random as jr, tree_util as jtu, vmap, lax
    from jax.numpy import linalg as jla
    from numpy.polynomial.hermite_e import herme2poly
    from typing import Callable

    factorial = lambda k: jnp.prod(jnp.arange(k, 0, -1).astype(float))
    He = lambda k, x: jnp.polyval(herme2poly([0] * k + [1])[::-1], x)
    sigma = jax.nn.relu

    # Utility function that iteratively computes the mean of a function f over a dataset
    # Useful for computing averages over ghost batches
    def laxmean(f, data):
        n = len(jtu.tree_leaves(data)[0])
        x0 = jtu.tree_map(lambda x: x[0], data)
        out_tree = jax.eval_shape(f, x0)
        avg_init = jtu.tree_map(
            lambda leaf: jnp.zeros(leaf.shape, dtype=leaf.dtype), out_tree
        )

        def step(avg, x):
            avg = jtu.tree_map(lambda a, b: a + b / n, avg, f(x))
            return avg, None

        return lax.scan(step, avg_init, data)[0]

    def experiment(
        fstar: Callable,  # target function (should map \R \to \R)
        key: jax.Array,  # random key
        n: int,  # number of data points
        d: int,  # input dimension
        m: int,  # network width
        sigma2: float,  # noise variance
        test_set_size: int = 10000,  # size of the test set
        val_set_size: int = 10000,  # size of the validation set
        batch_size=-1,  # ghost batch size (useful for large n)
    ):
        target_key, model_key, data_key, val_key, test_key = jr.split(key, 5)
        wstar = jr.normal(target_key, (d,))
        wstar = wstar / jla.norm(wstar)

        def gen_batch(key, batch_size):
            x_key, y_key = jr.split(key)
            x = jr.normal(x_key, (batch_size, d))
            y = fstar(x @ wstar) + jnp.sqrt(sigma2) * jr.normal(y_key, (batch_size,))
            return x, y

        def model_init(key):
            w_key, b_key, a_key = jr.split(key, 3)
            w = jr.normal(w_key, (m, d)) / jnp.sqrt(d)
            b = jr.normal(b_key, (m,))
            a = jr.rademacher(a_key, (m,))
            # Symmetrize
            w = w.at[m // 2 :, :].set(w[: m // 2, :])
            b = b.at[m // 2 :].set(b[: m // 2])
            a = a.at[m // 2 :].set(-a[: m // 2])
            return w, b, a

        w, b, a = model_init(model_key)

        # Split the computations over batches of size batch_size
        # We save the random seed for each batch to reuse samples
        if batch_size < 0:
            batch_size = n
        n_batch = n // batch_size
        assert n_batch * batch_size == n  # batch_size should divide n
        batch_keys = jr.split(data_key, n_batch)

        def get_C0_C1(batch_key):
            x, y = gen_batch(batch_key, batch_size)
            return y.mean(), y @ x / batch_size

        C0, C1 = laxmean(get_C0_C1, batch_keys)

        # Loss Function
        loss = lambda w, x, y: jnp.mean((sigma(x @ w.T + b) @ a - y) ** 2)

        # Gradient at Initialization
        def w_grad_fn(batch_key):
            x, y = gen_batch(batch_key, batch_size)
            y = y - C0 - x @ C1  # remove the linear part
            return jax.grad(loss)(w, x, y)

        dw = laxmean(w_grad_fn, batch_keys)
        avg_norm = jnp.sqrt(jnp.sum(dw**2, 1).mean(0))
        w = -dw / avg_norm  # one step of GD

        # If H \in \R^{n \times m} is the random feature matrix,
        # we want to minimize \frac{1}{n}\|H @ a - y\|^2 + \lambda \|a\|^2/2 which has closed form
        # a = (H^T H/n + \lambda I)^{-1} (H^T y)/n
        # Both H^T H/n and H^t y/n are averages over the data points and can be computed via sequential averaging:

        def K_fn(key):
            x, y = gen_batch(key, batch_size)
            y = y - C0 - x @ C1  # remove the linear part
            H = sigma(x @ w.T + b)  # random feature
            return H.T @ H / batch_size, H.T @ y / batch_size

        HtH, Hty = laxmean(K_fn, batch_keys)

        # reuse the SVD computation for all regularization parameters
        U, S, Vt = jla.svd(HtH)
        UtHty = U.T @ Hty
        a_fn = lambda wd: Vt.T @ (UtHty / (S + wd))

        # Generate a validation set to tune the regularization parameter
        val_x, val_y = gen_batch(val_key, val_set_size)
        val_y = val_y - C0 - val_x @ C1  # remove the linear part

        # Grid search over the regularization parameter
        wds = jnp.geomspace(1e-10, 1e15, 100)
        val_losses = vmap(
            lambda wd: jnp.mean((sigma(val_x @ w.T + b) @ a_fn(wd) - val_y) ** 2)
        )(wds)
        a = a_fn(wds[jnp.argmin(val_losses)])

        # Compute the Test Loss
        test_x, test_y = gen_batch(test_key, test_set_size)
        test_y = test_y - C0 - test_x @ C1
        test_loss = jnp.mean((sigma(test_x @ w.T + b) @ a - test_y) ** 2) - sigma2

        return test_loss, wds[jnp.argmin(val_losses)]  # (added: the chosen λ, for the report)

    fstar = lambda x: He(2, x) / jnp.sqrt(factorial(2))

    def run(seed, n, d, m, sigma2, dtype):
        if dtype != "float32":
            jax.config.update("jax_enable_x64", True)
        loss, wd = experiment(fstar, jr.PRNGKey(seed=seed), n=n, d=d, m=m, sigma2=sigma2)
        return float(loss), float(wd)

    return run, f"jax {jax.__version__}"


# ---------------------------------------------------------------------------------------------
# numpy PORT of the same function, line by line (see the header for what changed).
# ---------------------------------------------------------------------------------------------
def numpy_backend():
    from numpy.polynomial.hermite_e import herme2poly
    from typing import Callable

    DT = np.float32  # set by run(); JAX's default precision

    # jr.split / jr.normal / jr.rademacher on numpy SeedSequences ("keys")
    def split(key, num=2):
        return key.spawn(num)

    def normal(key, shape):
        return np.random.default_rng(key).standard_normal(shape, dtype=DT)

    def rademacher(key, shape):
        return (2 * np.random.default_rng(key).integers(0, 2, size=shape) - 1).astype(DT)

    factorial = lambda k: np.prod(np.arange(k, 0, -1).astype(float))
    He = lambda k, x: np.polyval(herme2poly([0] * k + [1])[::-1], x).astype(x.dtype)
    sigma = lambda z: np.maximum(z, 0)

    # Utility function that iteratively computes the mean of a function f over a dataset
    def laxmean(f, data):
        n = len(data)
        avg = None
        for x in data:
            out = f(x)
            avg = [o / n for o in out] if avg is None else [a + o / n for a, o in zip(avg, out)]
        return avg if len(avg) > 1 else avg[0]

    def experiment(
        fstar: Callable,  # target function (should map \R \to \R)
        key,  # random key (a numpy SeedSequence)
        n: int,  # number of data points
        d: int,  # input dimension
        m: int,  # network width
        sigma2: float,  # noise variance
        test_set_size: int = 10000,  # size of the test set
        val_set_size: int = 10000,  # size of the validation set
        batch_size=-1,  # ghost batch size (useful for large n)
    ):
        target_key, model_key, data_key, val_key, test_key = split(key, 5)
        wstar = normal(target_key, (d,))
        wstar = wstar / np.linalg.norm(wstar)

        def gen_batch(key, batch_size):
            x_key, y_key = split(key)
            x = normal(x_key, (batch_size, d))
            y = fstar(x @ wstar) + DT(np.sqrt(sigma2)) * normal(y_key, (batch_size,))
            return x, y

        def model_init(key):
            w_key, b_key, a_key = split(key, 3)
            w = normal(w_key, (m, d)) / DT(np.sqrt(d))
            b = normal(b_key, (m,))
            a = rademacher(a_key, (m,))
            # Symmetrize
            w[m // 2 :, :] = w[: m // 2, :]
            b[m // 2 :] = b[: m // 2]
            a[m // 2 :] = -a[: m // 2]
            return w, b, a

        w, b, a = model_init(model_key)

        # Split the computations over batches of size batch_size
        # We save the random seed for each batch to reuse samples
        if batch_size < 0:
            batch_size = n
        n_batch = n // batch_size
        assert n_batch * batch_size == n  # batch_size should divide n
        # jr.split(data_key, n_batch): keys that regenerate the same batch on every call
        # (a SeedSequence counts its spawns, so each use regenerates from a copy: `fresh`)
        batch_keys = split(data_key, n_batch)
        fresh = lambda k: np.random.SeedSequence(k.entropy, spawn_key=k.spawn_key)

        def get_C0_C1(batch_key):
            x, y = gen_batch(fresh(batch_key), batch_size)
            return y.mean(), y @ x / batch_size

        C0, C1 = laxmean(get_C0_C1, batch_keys)

        # Loss Function
        loss = lambda w, x, y: np.mean((sigma(x @ w.T + b) @ a - y) ** 2)

        # jax.grad(loss) with respect to w, written out
        def grad_loss(w, x, y):
            z = x @ w.T + b
            r = sigma(z) @ a - y
            return (2.0 / len(y)) * ((r[:, None] * a[None, :]) * (z > 0)).T @ x

        # Gradient at Initialization
        def w_grad_fn(batch_key):
            x, y = gen_batch(fresh(batch_key), batch_size)
            y = y - C0 - x @ C1  # remove the linear part
            return (grad_loss(w, x, y),)

        dw = laxmean(w_grad_fn, batch_keys)
        avg_norm = np.sqrt(np.sum(dw**2, 1).mean(0))
        w = -dw / avg_norm  # one step of GD

        # a = (H^T H/n + \lambda I)^{-1} (H^T y)/n, averaged over the (same) data points:
        def K_fn(key):
            x, y = gen_batch(fresh(key), batch_size)
            y = y - C0 - x @ C1  # remove the linear part
            H = sigma(x @ w.T + b)  # random feature
            return H.T @ H / batch_size, H.T @ y / batch_size

        HtH, Hty = laxmean(K_fn, batch_keys)

        # reuse the SVD computation for all regularization parameters
        U, S, Vt = np.linalg.svd(HtH)
        UtHty = U.T @ Hty
        a_fn = lambda wd: Vt.T @ (UtHty / (S + wd))

        # Generate a validation set to tune the regularization parameter
        val_x, val_y = gen_batch(val_key, val_set_size)
        val_y = val_y - C0 - val_x @ C1  # remove the linear part

        # Grid search over the regularization parameter (vmap: all λ at once)
        wds = np.geomspace(1e-10, 1e15, 100).astype(DT)
        A = Vt.T @ (UtHty[:, None] / (S[:, None] + wds[None, :]))  # m × 100: a_fn(wd) per column
        val_losses = np.mean((sigma(val_x @ w.T + b) @ A - val_y[:, None]) ** 2, axis=0)
        a = a_fn(wds[np.argmin(val_losses)])

        # Compute the Test Loss
        test_x, test_y = gen_batch(test_key, test_set_size)
        test_y = test_y - C0 - test_x @ C1
        test_loss = np.mean((sigma(test_x @ w.T + b) @ a - test_y) ** 2) - sigma2

        return test_loss, wds[np.argmin(val_losses)]

    fstar = lambda x: He(2, x) / DT(np.sqrt(factorial(2)))

    def run(seed, n, d, m, sigma2, dtype):
        nonlocal DT
        DT = np.float32 if dtype == "float32" else np.float64
        loss, wd = experiment(fstar, np.random.SeedSequence(seed), n=n, d=d, m=m, sigma2=sigma2)
        return float(loss), float(wd)

    return run, f"numpy {np.__version__} (port)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto", choices=["auto", "jax", "numpy"])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--d", type=int, default=100)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--sigma2", type=float, default=1.0)
    args = ap.parse_args()
    backend = args.backend
    if backend in ("auto", "jax"):
        try:
            run, version = jax_backend()
            backend = "jax"
        except ImportError as e:
            if args.backend == "jax":
                sys.exit(f"dls22.py: --backend jax: {e} (pip install 'jax[cpu]')")
            backend = "numpy"
    if backend == "numpy":
        run, version = numpy_backend()
    seeds = [int(s) for s in args.seeds.split(",")]
    risks, lambdas, seconds = [], [], []
    for seed in seeds:
        t = time.perf_counter()
        risk, wd = run(seed, args.n, args.d, args.m, args.sigma2, args.dtype)
        seconds.append(time.perf_counter() - t)
        risks.append(risk)
        lambdas.append(wd)
    sd = statistics.stdev(risks) if len(risks) > 1 else 0.0
    print(json.dumps({
        "peer": "dls22", "source": SOURCE, "commit": COMMIT, "backend": backend, "version": version,
        "dtype": args.dtype, "setup": {"fstar": "He2/sqrt(2)", "n": args.n, "d": args.d, "m": args.m,
                                       "sigma2": args.sigma2, "val": 10000, "test": 10000},
        "seeds": seeds, "excess_risk": risks, "lambda": lambdas, "seconds": seconds,
        "mean": statistics.fmean(risks), "sd": sd,
    }))


if __name__ == "__main__":
    main()
