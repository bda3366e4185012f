"""
fits.py: the scaling-law fits scaling.py draws, plain numpy (no scipy), each with bootstrap confidence intervals.

    Kaplan et al. 2020     L(X) = (X_c / X)^alpha               fit_power_law(x, y)
    Hoffmann et al. 2022   L(N, D) = E + A / N^alpha + B / D^beta  fit_chinchilla(N, D, loss)
    the compute-efficient frontier of many loss curves          frontier(C, L)
    every law for one corpus' finished runs                     fit_corpus(runs)  (which points each law takes)

fit_chinchilla minimises Hoffmann et al.'s Huber loss on log L (huber_objective) with a hand-written L-BFGS (lbfgs)
from the 64 best of their grid of starting points, as Besiroglu et al.'s replication did. With delta 1e-3 most
residuals fall in the Huber loss' linear part: the fit is close to least absolute deviations, robust to a few bad
points, while its R^2 still measures squared error.
"""
import itertools
import math

import numpy as np


def resample_weights(groups, n, n_boot, rng):
    """Bootstrap weights (n_boot, n): each resample draws as many groups as there are, with replacement, and a point
    counts as often as its group was drawn. groups: a label per point (the run it came from: the evals of one run
    are not independent, so runs are what is resampled), or None for every point on its own."""
    g = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    G = int(g.max()) + 1
    counts = np.zeros((n_boot, G))
    np.add.at(counts, (np.arange(n_boot)[:, None], rng.integers(0, G, (n_boot, G))), 1)
    return counts[:, g], G


def fit_power_law(x, y, n_boot=1000, seed=0, groups=None):
    """L(X) = (X_c / X)^alpha by least squares in log space: log y = alpha log X_c - alpha log x.
    Returns {alpha, x_c, log_x_c, r2 (of log y), n, units (what the bootstrap resampled: groups, else points),
    ci: {alpha, x_c: 95% bootstrap percentile intervals}}."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and of one length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and (y > 0).all()):
        raise ValueError("x and y must be finite and > 0 (a power law is fitted in log space)")
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise ValueError(f"a power law needs >= 3 points at >= 2 distinct x, got {len(x)} at {len(np.unique(x))}")
    lx, ly = np.log(x), np.log(y)

    def solve(w):          # w (B, n) point weights of each resample -> slope, intercept of each, closed form
        total = w.sum(1, keepdims=True)
        xm, ym = (w * lx).sum(1, keepdims=True) / total, (w * ly).sum(1, keepdims=True) / total
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (w * (lx - xm) * (ly - ym)).sum(1) / (w * (lx - xm) ** 2).sum(1)
        return slope, ym[:, 0] - slope * xm[:, 0]

    slope, icpt = solve(np.ones((1, len(x))))
    alpha = -slope[0]
    r2 = 1 - ((ly - icpt[0] - slope[0] * lx) ** 2).sum() / max(((ly - ly.mean()) ** 2).sum(), 1e-300)
    w, units = resample_weights(groups, len(x), n_boot, np.random.default_rng(seed))
    bs, bi = solve(w)
    # A resample of one distinct x has no slope; its mean's rounding can still give a finite, wild one: drop it.
    drawn = np.where(w > 0, lx, np.nan)
    ok = np.isfinite(bs) & (bs != 0) & (np.nanmax(drawn, 1) > np.nanmin(drawn, 1))   # a flat resample has no X_c
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        log_x_c = icpt[0] / alpha if alpha else math.nan                  # X_c overflows when alpha ~ 0
        x_c = np.exp(log_x_c)
        ci_xc = np.exp(np.percentile(bi[ok] / -bs[ok], [2.5, 97.5])).tolist() if ok.any() else [math.nan] * 2
    ci_alpha = np.percentile(-bs[ok], [2.5, 97.5]).tolist() if ok.any() else [math.nan] * 2
    return {"alpha": float(alpha), "x_c": float(x_c), "log_x_c": float(log_x_c), "r2": float(r2), "n": len(x),
            "units": units, "ci": {"alpha": ci_alpha, "x_c": ci_xc}}


def huber_objective(p, logN, logD, logL, w, delta):
    """p (S, 5) = rows of (a, b, e, alpha, beta); w (S or 1, n) point weights (bootstrap counts) ->
    f (S,) = sum_i w_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i) and its gradient (S, 5)."""
    a, b, e, al, be = (p[:, i:i + 1] for i in range(5))
    t = np.stack([a - al * logN, b - be * logD, np.broadcast_to(e, (len(p), len(logN)))])    # (3, S, n)
    top = t.max(0)
    ex = np.exp(t - top)
    lse = top + np.log(ex.sum(0))                             # log(A/N^alpha + B/D^beta + E), without overflow
    soft = ex / ex.sum(0)                                     # d lse / d t, (3, S, n)
    r = lse - logL
    f = (w * np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))).sum(1)
    psi = w * np.clip(r, -delta, delta)                       # Huber'(r)
    g = np.stack([(psi * soft[0]).sum(1), (psi * soft[1]).sum(1), (psi * soft[2]).sum(1),
                  -(psi * soft[0] * logN).sum(1), -(psi * soft[1] * logD).sum(1)], 1)
    return f, g


def lbfgs(fg, x0, iters=1000, memory=10, ftol=1e-10):
    """Minimise S independent problems at once: x0 (S, d) starts, fg(x, rows) -> (f (k,), g (k, d)) for those rows.
    Plain L-BFGS (two-loop recursion) with a backtracking Armijo line search, all in vectorised numpy: each row keeps
    its own history, step and stopping point. -> (x (S, d), f (S,))."""
    x = np.array(x0, float)
    S, d = x.shape
    f, g = fg(x, np.arange(S))
    s_hist, y_hist, rho = np.zeros((memory, S, d)), np.zeros((memory, S, d)), np.zeros((memory, S))
    gamma, active = 1.0 / np.maximum(np.abs(g).max(1), 1.0), np.ones(S, bool)   # first step: at most ~1 per coordinate
    for k in range(iters):
        order = [(k - 1 - i) % memory for i in range(memory)]             # newest pair first
        q, coef = g.copy(), np.zeros((memory, S))
        for i in order:
            coef[i] = rho[i] * (s_hist[i] * q).sum(1)
            q -= coef[i][:, None] * y_hist[i]
        q *= gamma[:, None]
        for i in reversed(order):
            q += s_hist[i] * (coef[i] - rho[i] * (y_hist[i] * q).sum(1))[:, None]
        p, slope = -q, -(g * q).sum(1)
        uphill = slope >= 0                                               # a stale history: fall back to -g
        p[uphill], slope[uphill], rho[:, uphill] = -g[uphill], -(g[uphill] ** 2).sum(1), 0
        step, x_new, f_new, g_new = np.ones(S), x.copy(), f.copy(), g.copy()
        searching = active.copy()
        for _ in range(50):                                                # halve the step until f drops enough
            rows = np.flatnonzero(searching)
            if not len(rows):
                break
            xt = x[rows] + step[rows, None] * p[rows]
            ft, gt = fg(xt, rows)
            ok = ft <= f[rows] + 1e-4 * step[rows] * slope[rows]
            x_new[rows[ok]], f_new[rows[ok]], g_new[rows[ok]] = xt[ok], ft[ok], gt[ok]
            searching[rows[ok]] = False
            step[rows[~ok]] *= 0.5
        s, y = x_new - x, g_new - g
        sy = (s * y).sum(1)
        curved = sy > 1e-12 * np.sqrt((s * s).sum(1) * (y * y).sum(1)) + 1e-300   # keep only pairs with curvature
        s_hist[k % memory], y_hist[k % memory] = s, y
        rho[k % memory] = np.where(curved, 1 / np.where(curved, sy, 1), 0)
        gamma = np.where(curved, sy / np.maximum((y * y).sum(1), 1e-300), gamma)
        converged = np.abs(f - f_new) <= ftol * np.maximum(np.abs(f), 1e-12)
        active &= ~(searching | converged)                                # no acceptable step, or no progress
        x, f, g = x_new, f_new, g_new
        if not active.any():
            break
    return x, f


CHINCHILLA_STARTS = np.array(list(itertools.product(    # Hoffmann et al.'s grid of initialisations: (a, b, e, alpha,
    np.arange(0, 30, 5.0), np.arange(0, 30, 5.0), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5),   # beta)
    np.arange(0, 2.5, 0.5))))


def fit_chinchilla(N, D, loss, delta=1e-3, n_boot=200, keep=64, seed=0, groups=None):
    """L(N, D) = E + A / N^alpha + B / D^beta as Hoffmann et al. and Besiroglu et al. fitted it: minimise the summed
    Huber loss (delta 1e-3) of log L - LSE(a - alpha log N, b - beta log D, e) with A, B, E = exp(a, b, e), by L-BFGS
    from Hoffmann's grid of 4,500 starts, keeping the best. Only the `keep` starts of lowest initial objective are
    optimised (on Epoch's points the best 32 already all reach the optimum; the others only cost time).
    Intervals: 95% percentiles of n_boot refits on resampled points (or groups of points, resample_weights), each
    started from the best fit and the 3 best grid starts, all in one batch. -> {E, A, B, alpha, beta, r2 (of log L),
    objective, n, ci, units (what was resampled), and a warning when an exponent leaves [0.01, 2], E falls to ~0 or
    there are only 2 model sizes: the fit is then not identified by these points}."""
    N, D, L = (np.asarray(v, float) for v in (N, D, loss))
    if not N.shape == D.shape == L.shape or N.ndim != 1:
        raise ValueError(f"N, D and loss must be 1-d and of one length, got shapes {N.shape}, {D.shape}, {L.shape}")
    if not all(np.isfinite(v).all() and (v > 0).all() for v in (N, D, L)):
        raise ValueError("N, D and loss must be finite and > 0")
    if len(N) < 6 or len(np.unique(N)) < 2 or len(np.unique(D)) < 2:
        raise ValueError(f"L(N, D) has 5 constants: it needs >= 6 points at >= 2 distinct N and D, got {len(N)} "
                         f"points, {len(np.unique(N))} N, {len(np.unique(D))} D")
    order = np.lexsort((L, D, N))   # the same points in another order give the same fit (an ill-posed one differed)
    N, D, L = N[order], D[order], L[order]
    groups = None if groups is None else np.asarray(groups)[order]
    logs = np.log(N), np.log(D), np.log(L)

    def fg_for(w):
        return lambda p, rows: huber_objective(p, *logs, w if len(w) == 1 else w[rows], delta)
    ones = np.ones((1, len(N)))
    chunks = np.array_split(CHINCHILLA_STARTS, max(1, len(CHINCHILLA_STARTS) * len(N) // 500_000))  # bounded memory
    f0 = np.concatenate([huber_objective(c, *logs, ones, delta)[0] for c in chunks])
    starts = CHINCHILLA_STARTS[np.argsort(f0)[:keep]]
    x, f = lbfgs(fg_for(ones), starts)
    best = x[np.argmin(f)]
    out = {"objective": float(f.min()), "n": len(N), "n_starts": len(starts)}
    pred = np.log(np.exp(best[0] - best[3] * logs[0]) + np.exp(best[1] - best[4] * logs[1]) + np.exp(best[2]))
    out["r2"] = float(1 - ((logs[2] - pred) ** 2).sum() / max(((logs[2] - logs[2].mean()) ** 2).sum(), 1e-300))

    def params(p):                               # rows of (a, b, e, alpha, beta) -> the named constants
        return dict(E=np.exp(p[..., 2]), A=np.exp(p[..., 0]), B=np.exp(p[..., 1]), alpha=p[..., 3], beta=p[..., 4])
    with np.errstate(over="ignore"):
        out.update({k: float(v) for k, v in params(best).items()})
    warnings = []
    if not (0.01 <= out["alpha"] <= 2 and 0.01 <= out["beta"] <= 2):   # near the edges of Hoffmann's grid (0, 2)
        warnings.append(f"alpha {out['alpha']:.3g}, beta {out['beta']:.3g}: outside [0.01, 2], so one term is flat "
                        "or vanishes; these points do not pin the law down (more model sizes and token budgets)")
    if len(np.unique(N)) < 3:   # E + A / N^alpha at two N: a line of (E, A, alpha) fits them equally well
        warnings.append("2 model sizes: E, A and alpha are not pinned down by two values of N (3 sizes or more)")
    if out["E"] < 0.01 * L.min():   # no language has an entropy near 0: the points show no floor
        warnings.append(f"E {out['E']:.3g} is under 1% of the lowest loss: the points show no irreducible loss, so "
                        "the power laws absorb it and their exponents are biased low (longer runs, larger models)"
                        + ("; E's bootstrap interval says little (refits started at this E, where its gradient "
                           "vanishes, mostly stay there)" if n_boot else ""))
    if warnings:
        out["warning"] = "; ".join(warnings)
    if n_boot:
        w, out["units"] = resample_weights(groups, len(N), n_boot, np.random.default_rng(seed))
        seeds = np.vstack([best, starts[:3]])                                  # (4, 5)
        xb, fb = lbfgs(fg_for(np.repeat(w, len(seeds), 0).astype(float)), np.tile(seeds, (n_boot, 1)))
        pick = xb.reshape(n_boot, len(seeds), 5)[np.arange(n_boot), fb.reshape(n_boot, -1).argmin(1)]
        lo_hi = np.percentile(pick, [2.5, 97.5], axis=0)      # of a, b, e: exp() of a refit may overflow, theirs not
        with np.errstate(over="ignore"):
            out["ci"] = {k: v.tolist() for k, v in params(lo_hi).items()}
        out["n_boot"] = n_boot
    return out


def frontier(C, L):
    """Indices of the compute-efficient frontier: the points, in order of C, with a lower loss than every point of
    smaller (or equal) compute. From all runs' eval curves this is Kaplan et al.'s L(C_min) envelope."""
    C, L = np.asarray(C, float), np.asarray(L, float)
    order = np.lexsort((L, C))                       # by C, the lower loss first among ties
    best = np.minimum.accumulate(L[order])
    keep = L[order] < np.r_[np.inf, best[:-1]]      # a new running minimum
    return order[keep]


def flop_per_token(run, exact_flops):
    """C / D of a run: 6N (Kaplan's and Hoffmann's approximation), or model.py's exact count (no FLOPs for the
    embedding lookup, attention's 12 L h T included)."""
    return run["flops_per_token"] if exact_flops else 6 * run["N"]

# -----------------------------------------------------------------------------
# Which points each law is fitted to


def attempt(fit, *arrays, about, **kw):
    """A fit, or {"skipped": why} when its points cannot support it (too few, one distinct x, ...)."""
    try:
        out = fit(*arrays, **kw)
    except ValueError as e:
        return {"skipped": str(e), "about": about}
    return {**out, "about": about, "points": [np.asarray(a, float).tolist() for a in arrays]}


def fit_corpus(runs, exact_flops=False, n_boot=1000, seed=0):
    """Every law for one corpus' finished runs -> {law: fit dict with its points, or {"skipped": why}}."""
    def most(key, distinct):   # the group of runs sharing `key` with the most distinct `distinct` values
        groups = {}
        for r in runs:
            groups.setdefault(r[key], []).append(r)
        return max(groups.items(), key=lambda kv: len({r[distinct] for r in kv[1]}))

    def final(group, key, about):     # a power law through the final losses of a group of runs
        return attempt(fit_power_law, [r[key] for r in group], [r["loss"] for r in group], n_boot=n_boot, seed=seed,
                       about=about)
    # L(N): final losses at the budget most models share. Kaplan's L(N) is at convergence; ours, like the paper's
    # figures, is at a fixed token budget, so it bends once the small budget rather than N limits the loss.
    budget, at = most("budget", "model")
    fits = {f"L({key})": final(at, key, f"final losses of {len(at)} runs at a budget of {budget}")
            for key in ("N", "N_nonemb")}
    model, series = most("model", "D")
    budgets = len({r["D"] for r in series})   # (two runs at one budget: --fit_all over repeated runs)
    fits["L(D)"] = final(series, "D", f"final losses of {model} at {budgets} token budgets"
                         + (f" ({len(series)} runs)" if budgets < len(series) else ""))
    # Every eval after warmup, from every run: before it the loss mostly measures the warmup, not N or D.
    # The bootstrap of these two resamples runs, not evals: the evals of one run share its weights and schedule.
    pts = np.array([(flop_per_token(r, exact_flops), r["N"], t, l, i) for i, r in enumerate(runs)
                    for t, l in zip(r["curve_tokens"], r["curve_loss"]) if t > r["warmup_tokens"]]).reshape(-1, 5)
    C, N, D, L, run = pts[:, 0] * pts[:, 2], pts[:, 1], pts[:, 2], pts[:, 3], pts[:, 4]
    on = frontier(C, L)
    fits["L(C)"] = attempt(fit_power_law, C[on], L[on], n_boot=n_boot, seed=seed, groups=run[on],
                           about=f"compute-efficient frontier: {len(on)} of {len(C)} evals after warmup, from "
                                 f"{len(set(run[on]))} runs")
    fits["L(N, D)"] = attempt(fit_chinchilla, N, D, L, n_boot=min(n_boot, 200), seed=seed, groups=run,
                              about=f"{len(L)} evals after warmup from {len(runs)} runs")
    return fits
