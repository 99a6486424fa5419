"""Times mim and the peers back to back on this machine and prints ratios.

    python3 benches/peers/run.py [--mim target/release/mim] [--sizes small|paper] [--reps 5]

Peers are optional (pip install numpy 'jax[cpu]'); a missing one is reported, not faked.
For a fair numpy timing, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed together from
the numpy child's environment (see README, Performance)."""
import argparse, json, os, subprocess, sys, tempfile

SIZES = {"tiny": [(20, 2000, 64)], "small": [(100, 10000, 1000)], "paper": [(100, 10000, 1000), (1000, 20000, 1000)]}

def peer(script, size, reps, env):
    d, n, m = size
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.run([sys.executable, os.path.join(here, script), str(d), str(n), str(m), str(reps)],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
    return json.loads(p.stdout.strip().splitlines()[-1]), None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mim", default=os.environ.get("MIM", "target/release/mim"))
    ap.add_argument("--sizes", default="small", choices=SIZES)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([args.mim, "bench", "--sizes", args.sizes, "--reps", str(args.reps), "--json", out], check=True,
                       stdout=subprocess.DEVNULL)
        report = json.load(open(out))
    sgemm = report["sgemm_gflops"]
    fair = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    rows = []
    for size in SIZES[args.sizes]:
        d, n, m = size
        flops = 4.0 * n * d * m
        mim = {t["name"].split("]")[0].split("[")[1]: t["median_ms"] for t in report["timings"]
               if t["name"].startswith("stage1_step") and f"d={d} n={n} m={m}" in t["name"]}
        np_out, np_err = peer("step_numpy.py", size, args.reps, fair)
        jax_out, jax_err = peer("step_jax.py", size, args.reps, dict(os.environ))
        np_ms = np_out["median_ms"] if np_out else None
        jax_ms = jax_out["median_ms"] if jax_out else None
        np_sgemm = np_out.get("sgemm_gflops") if np_out else None
        user = mim.pop("user", None)  # the step a default `mim train` pays, metrics included
        share = next((t.get("share_of_step") for t in report["timings"]
                      if t["name"] == f"metrics_per_step d={d} n={n} m={m}"), None)
        # Each repetition over the SGEMM samples around it (drift between repetitions cancels).
        paired = {t["name"].split("]")[0].split("[")[1]: t.get("paired_ratio_to_sgemm") for t in report["timings"]
                  if t["name"].startswith("stage1_step") and f"d={d} n={n} m={m}" in t["name"]}
        best = min(mim.values())
        row = {"d": d, "n": n, "m": m, "mim_ms": mim, "numpy_ms": np_ms, "jax_ms": jax_ms, "sgemm_gflops": sgemm,
               "mim_best_gflops": flops / best / 1e6, "mim_best_over_sgemm": flops / best / 1e6 / sgemm,
               "numpy_sgemm_gflops": np_sgemm,
               "mim_best_over_numpy_sgemm": flops / best / 1e6 / np_sgemm if np_sgemm else None,
               "mim_over_numpy": best / np_ms if np_ms else None, "mim_over_jax": best / jax_ms if jax_ms else None,
               "mim_user_ms": user, "mim_user_over_numpy": user / np_ms if user and np_ms else None,
               "mim_user_over_jax": user / jax_ms if user and jax_ms else None,
               "metrics_share_of_step": share, "paired_over_sgemm": paired,
               "errors": {k: v for k, v in (("numpy", np_err), ("jax", jax_err)) if v}}
        rows.append(row)
        print(f"d={d} n={n} m={m}: mim " + ", ".join(f"{k} {v:.1f} ms" for k, v in mim.items())
              + (f" | numpy {np_ms:.1f} ms" if np_ms else f" | numpy: {np_err}")
              + (f" | jax {jax_ms:.1f} ms" if jax_ms else f" | jax: {jax_err}"))
        print(f"   best mim {best:.1f} ms = {row['mim_best_gflops']:.1f} GFLOP/s = {row['mim_best_over_sgemm']:.2f} × SGEMM ({sgemm:.0f} GFLOP/s)"
              + (f" or {row['mim_best_over_numpy_sgemm']:.2f} × numpy's SGEMM ({np_sgemm:.0f} GFLOP/s)" if np_sgemm else "")
              + (f"; mim/numpy {row['mim_over_numpy']:.2f}" if np_ms else "")
              + (f"; mim/jax {row['mim_over_jax']:.2f}" if jax_ms else ""))
        if paired.get("fused"):
            print(f"   paired ÷ SGEMM (each repetition against the SGEMM samples around it): fused {paired['fused']:.2f}"
                  + (f", user-visible {paired['user']:.2f}" if paired.get("user") else ""))
        if user:
            print(f"   user-visible step (default metrics) {user:.1f} ms"
                  + (f"; ÷ numpy {row['mim_user_over_numpy']:.2f}" if np_ms else "")
                  + (f"; ÷ jax {row['mim_user_over_jax']:.2f}" if jax_ms else "")
                  + (f"; the metrics cost {share:.1%} of the rest of the step (timed inside the same runs by mim bench)"
                     if share is not None else f"; metrics add {user / best - 1:+.0%} to the fused step"))
    if args.json:
        json.dump({"threads": report["threads"], "rows": rows}, open(args.json, "w"), indent=2)

if __name__ == "__main__":
    main()
