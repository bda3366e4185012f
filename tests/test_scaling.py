"""scaling.py: the fits on synthetic data from known laws, the frontier, N/C accounting, the sweep's planner, skipper
and resumer on fake run directories, the reporting of missing and diverged runs, the figures and tables."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench
import scaling
from model import GPT, config_from_name
import fits
from fits import fit_chinchilla, fit_corpus, fit_power_law, flop_per_token, frontier, lbfgs
from report import baseline_crossing, emergence
from files import json_safe
from results import run_checkpoint_id
from scaling import collect, counts, read_run, run_state

HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def chinchilla_law(N, D, E, A, B, alpha, beta):
    return E + A / np.asarray(N, float) ** alpha + B / np.asarray(D, float) ** beta

# -----------------------------------------------------------------------------
# Fits


def test_power_law_recovers_a_known_exponent_with_noise():
    rng = np.random.default_rng(1)
    x = np.geomspace(1e5, 1e9, 15)
    y = (8.8e13 / x) ** 0.076 * np.exp(rng.normal(0, 0.003, x.size))     # Kaplan's L(N), 0.3% noise
    f = fit_power_law(x, y, n_boot=500)
    assert f["alpha"] == pytest.approx(0.076, abs=0.004)
    assert np.log10(f["x_c"]) == pytest.approx(np.log10(8.8e13), abs=0.5)   # X_c lives in the exponent
    assert f["r2"] > 0.98 and f["n"] == 15
    lo, hi = f["ci"]["alpha"]
    assert lo < 0.076 < hi and hi - lo < 0.01
    exact = fit_power_law(x, (2e10 / x) ** 0.5, n_boot=10)                # no noise: exact
    assert exact["alpha"] == pytest.approx(0.5, rel=1e-9) and exact["x_c"] == pytest.approx(2e10, rel=1e-6)
    assert exact["r2"] == pytest.approx(1.0)


def test_power_law_bootstrap_drops_resamples_of_one_distinct_x():
    """Three nearly collinear points: a resample of one x repeated has a mean that rounds, so a finite, wild 'slope';
    kept, it spread the alpha interval to [-0.125, 0.138] around an alpha of 0.137."""
    f = fit_power_law([228012.76989211596, 520078.83886637003, 1063607.6266031447],
                      [5.458279917779254, 4.87829011678795, 4.420794303868725])
    lo, hi = f["ci"]["alpha"]
    assert 0.135 < lo <= f["alpha"] <= hi < 0.139
    flat = fit_power_law([1e6, 2e6, 4e6], [3.0, 3.0, 2.5])["ci"]   # a resample of two equal losses is flat: no X_c
    assert all(np.isfinite(flat["x_c"])) and flat["alpha"][0] > 0


def test_power_law_r2_and_intervals_are_the_textbook_ones():
    """R^2 = 1 - SS_res / SS_tot of log y (noise around a flat line explains nothing: R^2 ~ 0, not ~1), and the 95%
    intervals are the 2.5 and 97.5 percentiles of refits on the same resamples, here redone with np.polyfit."""
    rng = np.random.default_rng(3)
    x = np.geomspace(1e6, 1e9, 8)
    lx = np.log(x)
    r2 = []
    for y in (3.0 * np.exp(rng.normal(0, 0.05, x.size)), (1e10 / x) ** 0.1 * np.exp(rng.normal(0, 0.02, x.size))):
        f = fit_power_law(x, y, n_boot=200, seed=7)
        ly = np.log(y)
        slope, icpt = np.polyfit(lx, ly, 1)
        assert f["r2"] == pytest.approx(1 - ((ly - icpt - slope * lx) ** 2).sum() / ((ly - ly.mean()) ** 2).sum(),
                                        rel=1e-9)
        r2.append(f["r2"])
    assert r2[0] < 0.5 < 0.95 < r2[1]
    idx = np.random.default_rng(7).integers(0, x.size, (200, x.size))
    idx = idx[np.ptp(lx[idx], 1) > 0]
    boot = np.array([np.polyfit(lx[i], ly[i], 1) for i in idx])          # (slope, intercept) of each resample
    np.testing.assert_allclose(f["ci"]["alpha"], np.percentile(-boot[:, 0], [2.5, 97.5]), rtol=1e-7)
    np.testing.assert_allclose(f["ci"]["x_c"], np.exp(np.percentile(boot[:, 1] / -boot[:, 0], [2.5, 97.5])),
                               rtol=1e-6)


def test_bootstrap_resamples_whole_groups_when_given_them():
    """Evals of one run are not independent: with groups (the run of each point) a resample draws runs, each with all
    its points. Checked against a direct redo: concatenate the drawn groups' points, np.polyfit."""
    rng = np.random.default_rng(5)
    x = np.geomspace(1e6, 1e9, 12)
    y = (1e10 / x) ** 0.1 * np.exp(rng.normal(0, 0.02, x.size))
    groups = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 4]) * 10          # any labels; one run holds 7 points
    f = fit_power_law(x, y, n_boot=300, seed=3, groups=groups)
    lx, ly = np.log(x), np.log(y)
    boot = []
    for drawn in np.random.default_rng(3).integers(0, 5, (300, 5)):
        idx = np.concatenate([np.flatnonzero(groups == 10 * k) for k in drawn])
        if np.ptp(lx[idx]) > 0:
            boot.append(np.polyfit(lx[idx], ly[idx], 1))
    boot = np.array(boot)
    np.testing.assert_allclose(f["ci"]["alpha"], np.percentile(-boot[:, 0], [2.5, 97.5]), rtol=1e-7)
    assert f["units"] == 5 and fit_power_law(x, y, n_boot=10)["units"] == 12
    assert np.ptp(f["ci"]["alpha"]) > np.ptp(fit_power_law(x, y, n_boot=300, seed=3)["ci"]["alpha"])   # wider
    N, D = np.repeat([1e6, 4e6, 1.6e7], 4), np.tile([1e8, 3e8, 1e9, 3e9], 3)
    loss = chinchilla_law(N, D, **HOFFMANN) * np.exp(rng.normal(0, 0.003, N.size))
    assert fit_chinchilla(N, D, loss, n_boot=5, groups=N)["units"] == 3


@pytest.mark.parametrize("x, y, words", [([1, 2, 3], [1, 2], "one length"), ([1, 2, -3], [1, 2, 3], "> 0"),
                                         ([1, 2, np.nan], [1, 2, 3], "finite"), ([1, 2], [3, 2], ">= 3 points"),
                                         ([5, 5, 5], [3, 2, 1], "2 distinct")])
def test_power_law_rejects_bad_input_with_a_reason(x, y, words):
    with pytest.raises(ValueError, match=words):
        fit_power_law(x, y)


def test_lbfgs_solves_independent_rosenbrocks_at_once():
    scales = np.array([1.0, 10.0, 100.0])     # three problems, one per row, each with its own curvature

    def fg(x, rows):
        a, b, s = x[:, 0], x[:, 1], scales[rows]
        f = (1 - a) ** 2 + s * (b - a * a) ** 2
        return f, np.stack([-2 * (1 - a) - 4 * s * a * (b - a * a), 2 * s * (b - a * a)], 1)
    x, f = lbfgs(fg, np.array([[-1.2, 1.0], [2.0, -1.0], [0.0, 3.0]]), iters=3000)
    np.testing.assert_allclose(x, 1.0, atol=1e-4)
    assert (f < 1e-8).all()


def test_chinchilla_fit_recovers_hoffmanns_constants_from_noisy_points():
    rng = np.random.default_rng(0)
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e7, 2e10, 9), np.geomspace(2e8, 5e11, 9)))   # 81 points
    loss = chinchilla_law(N, D, **HOFFMANN) * np.exp(rng.normal(0, 0.003, N.size))
    f = fit_chinchilla(N, D, loss, n_boot=100)
    assert f["E"] == pytest.approx(1.69, abs=0.06)
    assert f["alpha"] == pytest.approx(0.34, abs=0.03) and f["beta"] == pytest.approx(0.28, abs=0.03)
    assert np.log(f["A"]) == pytest.approx(np.log(406.4), abs=0.5) and np.log(f["B"]) == pytest.approx(
        np.log(410.7), abs=0.5)
    assert f["r2"] > 0.99 and f["n"] == 81
    for k, v in HOFFMANN.items():                       # the 95% intervals hold the truth
        lo, hi = f["ci"][k]
        assert lo <= f[k] <= hi and lo < v < hi, (k, lo, v, hi)
    exact = fit_chinchilla(N, D, chinchilla_law(N, D, **HOFFMANN), n_boot=0)    # no noise: the constants themselves
    for k, v in HOFFMANN.items():
        assert exact[k] == pytest.approx(v, rel=0.02), k
    assert "ci" not in exact and "warning" not in f and "warning" not in exact


def test_chinchilla_fit_shrugs_off_one_gross_outlier():
    """Huber delta 1e-3 on log L (Hoffmann's): a point 35% off costs only delta x its residual, so the other 35 points
    still give the constants (a delta of 0.1 is least squares there: E 1.62, A 276)."""
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e7, 2e10, 6), np.geomspace(2e8, 5e11, 6)))
    loss = chinchilla_law(N, D, **HOFFMANN)
    loss[7] *= np.exp(0.3)
    f = fit_chinchilla(N, D, loss, n_boot=0)
    assert f["E"] == pytest.approx(1.69, abs=0.005) and f["alpha"] == pytest.approx(0.34, abs=0.002)
    assert f["beta"] == pytest.approx(0.28, abs=0.002) and f["A"] == pytest.approx(406.4, rel=0.02)
    assert f["objective"] == pytest.approx(1e-3 * (0.3 - 1e-3 / 2), rel=0.01)     # the outlier's linear cost


def test_huber_objective_and_its_gradient_by_hand():
    """At the true constants every residual is 0 but the outlier's 0.3: f = delta (0.3 - delta / 2) exactly, and the
    analytic gradient equals central differences (with a residual on each side of delta)."""
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e7, 2e10, 6), np.geomspace(2e8, 5e11, 6)))
    loss = chinchilla_law(N, D, **HOFFMANN)
    loss[7] *= np.exp(0.3)
    h = HOFFMANN
    p = np.array([[np.log(h["A"]), np.log(h["B"]), np.log(h["E"]), h["alpha"], h["beta"]]])
    logs = np.log(N), np.log(D), np.log(loss)
    f, g = fits.huber_objective(p, *logs, np.ones((1, len(N))), 1e-3)
    assert f[0] == pytest.approx(1e-3 * (0.3 - 1e-3 / 2), rel=1e-9, abs=1e-12)
    q = p + np.array([[0.02, -0.03, 0.01, 0.004, -0.002]])       # residuals of a few 1e-3: both Huber branches
    f, g = fits.huber_objective(q, *logs, np.ones((1, len(N))), 1e-3)
    eye = np.eye(5) * 1e-7
    numeric = [(fits.huber_objective(q + e, *logs, np.ones((1, len(N))), 1e-3)[0][0] -
                fits.huber_objective(q - e, *logs, np.ones((1, len(N))), 1e-3)[0][0]) / 2e-7 for e in eye]
    np.testing.assert_allclose(g[0], numeric, rtol=1e-5, atol=1e-9)


def test_chinchilla_intervals_keep_the_best_start_of_each_refit(monkeypatch):
    """Each bootstrap refit starts from the fit and from 3 grid points and keeps the lowest objective. On well-posed
    points the fit itself is nearly always that best start, so here its refits are made to get nowhere (they return
    their start): the intervals must still come from the other starts, not collapse onto the fit."""
    rng = np.random.default_rng(0)
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(5e7, 2e10, 6), np.geomspace(2e8, 5e11, 6)))
    loss = chinchilla_law(N, D, **HOFFMANN) * np.exp(rng.normal(0, 0.003, N.size))
    calls, real = [], fits.lbfgs

    def stuck_first(fg, x0, **kw):
        x, f = real(fg, x0, **kw)
        if calls:                                             # the bootstrap: rows of (fit, 3 grid starts) per refit
            first = np.arange(0, len(x0), 4)
            x[first], f[first] = x0[first], fg(x0[first], first)[0]
        calls.append((x, f))
        return x, f
    monkeypatch.setattr(fits, "lbfgs", stuck_first)
    f = fit_chinchilla(N, D, loss, n_boot=20)
    xb, fb = calls[-1]
    pick = xb.reshape(20, 4, 5)[np.arange(20), fb.reshape(20, 4).argmin(1)]
    lo, hi = np.percentile(pick, [2.5, 97.5], axis=0)
    for k, i in (("alpha", 3), ("beta", 4)):
        assert f["ci"][k] == pytest.approx([lo[i], hi[i]], rel=1e-12)
    assert f["ci"]["E"] == pytest.approx(np.exp([lo[2], hi[2]]), rel=1e-12)
    for k, v in HOFFMANN.items():                          # 20 refits: not always around the truth
        lo_k, hi_k = f["ci"][k]
        assert lo_k < f[k] < hi_k and hi_k - lo_k < 0.5 * v, (k, lo_k, f[k], hi_k)


def test_chinchilla_fit_warns_when_the_points_cannot_pin_it_down():
    N, D = np.repeat([1e6, 2e6, 4e6], 6), np.tile(np.geomspace(1e7, 1e9, 6), 3)
    f = fit_chinchilla(N, D, 2 + 400 / D ** 0.3, n_boot=0)     # the loss does not depend on N: A / N^alpha vanishes
    assert f["alpha"] > 2 and f["beta"] == pytest.approx(0.3) and "do not pin the law down" in f["warning"]
    f = fit_chinchilla(N, D, 20 / N ** 0.2 + 400 / D ** 0.3, n_boot=0)   # no floor: E falls to ~0, said
    assert f["E"] < 1e-3 and "no irreducible loss" in f["warning"] and "do not pin" not in f["warning"]
    assert "model sizes" not in f["warning"]
    two = N < 3e6                                           # two sizes only: E trades with A and alpha, said
    f = fit_chinchilla(N[two], D[two], (2 + 20 / N ** 0.2 + 400 / D ** 0.3)[two], n_boot=0)
    assert f["warning"] == "2 model sizes: E, A and alpha are not pinned down by two values of N (3 sizes or more)"
    L = 20 / N ** 0.2 + 400 / D ** 0.3
    shuffled = np.random.default_rng(0).permutation(len(N))   # an ill-posed fit: the same points in another order
    for n_boot, groups in ((0, None), (20, None), (20, np.arange(len(N)) // 3)):   # give the same constants
        f, g = (fit_chinchilla(N[o], D[o], L[o], n_boot=n_boot, groups=None if groups is None else groups[o])
                for o in (np.arange(len(N)), shuffled))
        assert json.dumps(f, sort_keys=True) == json.dumps(g, sort_keys=True)


def test_fits_json_is_strict_json():
    record = {"x_c": np.float64("inf"), "ci": [float("nan"), np.float32(2.5)], "n": np.int64(3), "ok": "a"}
    assert json.loads(json.dumps(json_safe(record), allow_nan=False)) == {"x_c": None, "ci": [None, 2.5], "n": 3,
                                                                           "ok": "a"}


def test_chinchilla_fit_rejects_too_few_points_and_bad_values():
    N, D = np.geomspace(1e6, 1e8, 8), np.geomspace(1e8, 1e10, 8)
    with pytest.raises(ValueError, match="distinct N and D"):
        fit_chinchilla(np.full(8, 1e6), D, np.full(8, 3.0))
    with pytest.raises(ValueError, match="> 0"):
        fit_chinchilla(N, D, np.r_[np.full(7, 3.0), -1.0])
    with pytest.raises(ValueError, match="one length"):
        fit_chinchilla(N, D[:5], np.full(8, 3.0))


def test_frontier_keeps_the_running_minimum_over_compute():
    C = np.array([10, 1, 3, 2, 5, 5, 8, 20, 30])
    L = np.array([2.0, 5, 3, 4, 3.5, 2.5, 2.6, 1.0, 1.5])
    on = frontier(C, L)
    assert C[on].tolist() == [1, 2, 3, 5, 10, 20]        # 5 twice: only its lower loss; 8 and 30: beaten earlier
    assert L[on].tolist() == [5, 4, 3, 2.5, 2.0, 1.0]
    assert (np.diff(L[on]) < 0).all()
    assert frontier([1, 2, 3], [3, 3, 2]).tolist() == [0, 2]       # more compute for the same loss is not on it


def test_crossing_is_where_accuracy_stays_above_the_baseline():
    C = np.array([1e10, 1e11, 1e12, 1e13])
    assert baseline_crossing(C, np.array([0.4, 0.6, 0.4, 0.7]), 0.5) == pytest.approx(10 ** (12 + 1 / 3))  # last rise
    assert baseline_crossing(C, np.array([0.6, 0.7, 0.8, 0.9]), 0.5) == 1e10                        # above from the start
    assert baseline_crossing(C, np.array([0.6, 0.7, 0.8, 0.5]), 0.5) is None                        # ends at chance

# -----------------------------------------------------------------------------
# Counting N, D and C


def test_parameter_and_flop_counts_match_the_paper_and_model_py():
    assert counts("h32-L2", 15000)["N"] == 992_928                 # the paper's table of model sizes
    assert counts("h1024-L8", 15000)["N"] == 164_955_136
    for name in ("h64-L4", "h256-L2"):
        c, h = counts(name, 15000), config_from_name(name).n_embd
        assert c["N"] - c["N_nonemb"] == 2 * 15000 * h             # the embedding and the untied head
        real = GPT(config_from_name(name, vocab_size=15000))
        assert c["flops_per_token"] == real.flops_per_token() and c["N_nonemb"] == real.num_params(True)


def test_compute_is_6_n_d_with_every_parameter_and_only_evals_after_warmup_are_fitted():
    """C = 6 N D with N all parameters (the README's), or flops_per_token x D with --exact_flops; L(C) and L(N, D) take
    the evals after warmup only (at or before its end the loss measures the warmup schedule)."""
    run = {"N": 1000, "N_nonemb": 400, "flops_per_token": 7777}
    assert flop_per_token(run, False) == 6000 and flop_per_token(run, True) == 7777
    tokens, warmup = np.arange(1, 11) * 1e5, 3e5                           # 10 evals, the first 3 in the warmup
    runs = [dict(name=f"n{i}", model=f"m{i}", budget="1M tokens", N=N, N_nonemb=N / 3, flops_per_token=5 * N, D=tokens[-1],
                 warmup_tokens=warmup, curve_tokens=tokens, curve_loss=chinchilla_law(N, tokens, **HOFFMANN),
                 loss=float(chinchilla_law(N, tokens[-1], **HOFFMANN))) for i, N in enumerate((1e6, 2e6, 4e6, 8e6))]
    after = [(r["N"], t, l) for r in runs for t, l in zip(r["curve_tokens"], r["curve_loss"]) if t > warmup]
    for exact, per_token in ((False, lambda N: 6 * N), (True, lambda N: 5 * N)):
        f = fit_corpus(runs, exact_flops=exact, n_boot=0)
        nd = f["L(N, D)"]
        assert sorted(zip(*nd["points"])) == sorted(after) and nd["n"] == 28 and "28 evals after warmup" in nd["about"]
        C, L = f["L(C)"]["points"]
        assert "of 28 evals after warmup" in f["L(C)"]["about"] and len(C) >= 3
        allowed = {(round(per_token(N) * t), l) for N, t, l in after}
        assert all((round(c), l) in allowed for c, l in zip(C, L)), exact


def dataset(root, name, train_tokens=2_925_780, V=4096):
    """Only meta.json: all the planner reads."""
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "meta.json").write_text(json.dumps({"name": name, "train_tokens": train_tokens, "vocab_size": V}))
    return root / name


def test_plan_of_the_default_grid(tmp_path, capsys):
    for name in ("simplified", "unrestricted"):
        dataset(tmp_path, name)
    args = scaling.parse_args(["--data_root", str(tmp_path), "--out_dir", str(tmp_path / "out")])
    runs = scaling.plan(args)
    assert len(runs) == 12 and len({r["name"] for r in runs}) == 12
    r = {r["name"]: r for r in runs}
    small, series = r["h32-L2-simplified-1M"], r["h64-L2-unrestricted-250k"]
    assert small["lr"] == 2.8e-3 and small["D"] == 1_000_000 // 2048 * 2048       # whole steps of 16 x 128
    assert small["C"] == 6 * counts("h32-L2", 4096)["N"] * small["D"]
    assert small["C_exact"] == counts("h32-L2", 4096)["flops_per_token"] * small["D"]
    assert series["max_tokens"] == 250_000 and series["lr"] == pytest.approx(2.8e-3 / 2 ** 0.5, rel=0.01)
    cmd = scaling.command(small, args, "todo")
    assert cmd[1].endswith("train.py") and cmd[cmd.index("--max_tokens") + 1] == "1000000"
    assert "--threads" in cmd and "--resume" not in cmd and "--overwrite" not in cmd
    assert scaling.command(small, args, "resume")[-1] == "--resume"
    assert scaling.command(small, args, "restart")[-1] == "--overwrite"
    multi = scaling.parse_args(["--data_root", str(tmp_path), "--nproc_per_node", "8", "--grid", "paper"])
    paper = scaling.plan(multi)
    assert len(paper) == 2 * (18 + 4) and multi.parallel == 1
    epoch = [p for p in paper if p["name"] == "h32-L2-simplified-1ep"][0]
    assert epoch["D"] == (2_925_780 - 1) // 128 * 128 // 65536 * 65536            # one pass, whole steps of 512 x 128
    for name in ("simplified", "unrestricted"):   # 40 steps of tokens, but the last block needs one token more
        dataset(tmp_path / "even", name, train_tokens=65536 * 40)
    even = scaling.plan(scaling.parse_args(["--data_root", str(tmp_path / "even"), "--grid", "paper"]))
    epoch = [p for p in even if p["name"] == "h32-L2-simplified-1ep"][0]
    assert epoch["steps"] == 39 and epoch["D"] == 39 * 65536       # as train.py runs it: (T - 1) // 128 blocks
    assert "torch.distributed.run" in scaling.command(epoch, multi, "todo") and "--nproc_per_node=8" in \
        scaling.command(epoch, multi, "todo")
    once = scaling.plan(scaling.parse_args(["--data_root", str(tmp_path), "--grid", "paper", "--models", "h32-L2",
                                            "--series_model", "h32-L2", "--series", "0.5,1",
                                            "--corpora", "simplified"]))
    assert [r["name"] for r in once] == ["h32-L2-simplified-1ep", "h32-L2-simplified-1.46M"]   # 1 x 1ep: the same run
    with pytest.raises(SystemExit, match="model name"):
        scaling.parse_args(["--models", "h64"])
    assert scaling.parse_args(["--tokens", "2.5e5"]).tokens == 250_000
    with pytest.raises(SystemExit):
        scaling.parse_args(["--tokens", "abc"])
    assert "'abc' is not a whole number" in capsys.readouterr().err

# -----------------------------------------------------------------------------
# Fake run directories: the skipper, the resumer, and the reports


def fake_run(out, name, model="h64-L2", corpus="simplified", tokens=1_000_000, lr=None, end=True, diverge=False,
             ckpt=True, law=HOFFMANN, V=4096, data_dir=None):
    """A run directory as train.py leaves it, its val losses following `law` at every eval (every 50 steps)."""
    c = counts(model, V)
    tps, steps = 16 * 128, tokens // (16 * 128)
    d = out / name
    d.mkdir(parents=True)
    config = {"train": {"model": model, "max_tokens": tokens, "epochs": 1.0, "lr": lr or scaling.lr_for(model),
                        "batch_size": 16, "warmup_steps": 30},
              "dataset": {"name": corpus, "dir_abs": str(Path(data_dir or f"data/{corpus}").resolve())},
              "derived": {"params": c["N"], "params_non_embedding": c["N_nonemb"], "tokens_per_step": tps,
                          "flops_per_token": c["flops_per_token"]}}
    config["train"]["lr"] = float(f"{config['train']['lr']:.3g}")
    (d / "config.json").write_text(json.dumps(config))
    lines = [{"event": "start", "step": 0}]
    for s in sorted({*range(0, steps, 50), steps}):
        loss = float(chinchilla_law(c["N"], max(s, 1) * tps, **law))
        lines.append({"event": "step", "step": s, "tokens": s * tps, "val_loss": loss, "train_loss": loss})
    if diverge:
        lines.append({"event": "stopped", "step": steps, "tokens": steps * tps, "train_loss": "nan", "val_loss": None})
    elif end:
        lines.append({"event": "end", "step": steps, "tokens": steps * tps, "elapsed_s": 10.0, "val_loss": loss})
    (d / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    if ckpt:
        (d / "ckpt.pt").write_bytes(b"not a checkpoint")   # (scaling.py: its checkpoint id is None)
    return d


def test_a_grid_of_ones_own_takes_what_it_leaves_out_from_the_cpu_grid(tmp_path, monkeypatch):
    monkeypatch.setitem(scaling.GRIDS, "mine", dict(models="h32-L2,h48-L3", tokens=100_000))
    for name in ("simplified", "unrestricted"):
        dataset(tmp_path, name)
    args = scaling.parse_args(["--grid", "mine", "--data_root", str(tmp_path), "--batch_size", "8"])
    assert (args.models, args.tokens, args.batch_size) == ("h32-L2,h48-L3", 100_000, 8)
    cpu = scaling.GRIDS["cpu"]
    assert (args.series_model, args.series, args.warmup_steps, args.eval_interval, args.threads) == (
        cpu["series_model"], cpu["series"], cpu["warmup_steps"], cpu["eval_interval"], cpu["threads"])
    assert args.parallel >= 1 and len(scaling.plan(args)) == 2 * (2 + 2)


def test_plan_takes_lr_from_the_command_line_over_the_per_width_rule(tmp_path):
    dataset(tmp_path, "simplified")
    args = scaling.parse_args(["--data_root", str(tmp_path), "--corpora", "simplified", "--lr", "8e-4"])
    runs = scaling.plan(args)
    assert len({r["model"] for r in runs}) == 4 and all(r["lr"] == 8e-4 for r in runs)
    cmd = scaling.command(runs[0], args, "todo")
    assert cmd[cmd.index("--lr") + 1] == "0.0008"


def test_read_run_counts_warmup_in_tokens(tmp_path):
    r = read_run(fake_run(tmp_path, "h64-L2-simplified-1M"))       # warmup 30 steps of 16 x 128 tokens
    assert r["warmup_tokens"] == 30 * 16 * 128
    assert r["N"] == counts("h64-L2", 4096)["N"] and r["D"] == 488 * 2048 and r["curve_tokens"][1] == 50 * 2048


def test_run_states_say_what_the_sweep_does(tmp_path):
    for name in ("simplified", "unrestricted"):
        dataset(tmp_path / "data", name)
    args = scaling.parse_args(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out")])
    runs = {r["name"]: r for r in scaling.plan(args)}
    out, sim = tmp_path / "out", str(tmp_path / "data" / "simplified")
    fake_run(out, "h64-L2-simplified-1M", data_dir=sim)
    fake_run(out, "h32-L2-simplified-1M", model="h32-L2", end=False, data_dir=sim)
    fake_run(out, "h64-L4-simplified-1M", model="h64-L4", end=False, ckpt=False, data_dir=sim)
    fake_run(out, "h128-L2-simplified-1M", model="h128-L2", diverge=True, data_dir=sim)
    fake_run(out, "h64-L2-simplified-500k", tokens=500_000, lr=1e-3, data_dir=sim)       # made with another LR
    states = {n: run_state(r["dir"], r)[0] for n, r in runs.items()}
    assert states["h64-L2-simplified-1M"] == "done" and states["h32-L2-simplified-1M"] == "resume"
    assert states["h64-L4-simplified-1M"] == "restart" and states["h128-L2-simplified-1M"] == "diverged"
    assert states["h64-L2-simplified-500k"] == "conflict" and states["h64-L2-unrestricted-1M"] == "todo"
    assert "lr" in run_state(runs["h64-L2-simplified-500k"]["dir"], runs["h64-L2-simplified-500k"])[1]
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--results_dir", str(tmp_path / "r"),
                  "--fit_only", "--n_boot", "10"])
    left_out = {x["run"]: x["why"] for x in json.loads((tmp_path / "r" / "fits.json").read_text())["left_out"]}
    assert left_out["h64-L2-simplified-500k"].startswith("conflict") and "lr" in left_out["h64-L2-simplified-500k"]
    assert left_out["h32-L2-simplified-1M"].startswith("resume") and left_out["h128-L2-simplified-1M"].startswith(
        "diverged") and left_out["h64-L2-unrestricted-1M"].startswith("missing")
    assert len(left_out) == 11                                   # only h64-L2-simplified-1M is fitted
    lower = {r["name"]: r for r in scaling.plan(scaling.parse_args([   # as STATES["diverged"] says: a lower --lr
        "--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--lr", "1e-4"]))}
    state, detail = run_state(out / "h128-L2-simplified-1M", lower["h128-L2-simplified-1M"])
    assert state == "restart" and "diverged with {'lr': (0.0014, 0.0001)}" in detail
    assert run_state(out / "h64-L2-simplified-1M", lower["h64-L2-simplified-1M"])[0] == "conflict"   # finished: kept


def one_run(tmp_path, *flags, sha="aaa"):
    """The plan of one h64-L2 run on a 'simplified' dataset whose meta.json has a tokenizer, and its parsed args."""
    meta = dataset(tmp_path / "data", "simplified") / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "tokenizer": {"sha256": sha}}))
    args = scaling.parse_args(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora",
                               "simplified", "--models", "h64-L2", "--series", "", *flags])
    return scaling.plan(args)[0], args


def test_fit_only_over_runs_of_other_settings_says_how_to_fit_them(tmp_path, capsys):
    run, _ = one_run(tmp_path)
    d = fake_run(tmp_path / "out", run["name"], data_dir=str(tmp_path / "data" / "simplified"))
    config = json.loads((d / "config.json").read_text())
    config["train"]["warmup_steps"] = 7                              # trained with a flag this command leaves out
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="every one of the grid's runs here was made with other settings .*--fit_all"):
        scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora",
                      "simplified", "--models", "h64-L2", "--series", "", "--fit_only"])
    assert "(pass the flags it was trained with, --fit_all to fit it as it is" in capsys.readouterr().out


def test_dry_run_notes_what_train_py_would_note(tmp_path, capsys):
    """Said in the plan, not only in each run's train.out: a warmup longer than the run, a budget past one epoch
    (the dataset here has 2,925,780 train tokens), too few evals for the curves."""
    one_run(tmp_path)
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora", "simplified",
                  "--models", "h64-L2", "--series", "", "--tokens", "5e6", "--warmup_steps", "3000", "--dry-run"])
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: h64-L2-simplified-5M")]
    assert note == ["note: h64-L2-simplified-5M: --warmup_steps 3000 > its 2441 steps (the LR never peaks); 4,999,168 "
                    "tokens, more than one pass over its corpus' 2,925,696 (blocks repeat)"]
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora", "simplified",
                  "--models", "h64-L2", "--series", "", "--tokens", "1e5", "--dry-run"])
    assert "1 evals after step 0 at --eval_interval 50" in capsys.readouterr().out


def test_a_run_with_other_train_args_or_data_conflicts_and_a_moved_one_does_not(tmp_path):
    run, _ = one_run(tmp_path)
    d = fake_run(tmp_path / "out", run["name"], data_dir="/elsewhere/data/simplified")   # a moved checkout
    config = json.loads((d / "config.json").read_text())
    config["train"].update(seed=1337, weight_decay=0.1, beta2=0.95, eval_interval=50, eval_blocks=200, dtype="auto")
    config["dataset"].update(tokenizer_sha256="aaa", train_tokens=2_925_780)
    (d / "config.json").write_text(json.dumps(config))
    assert run_state(d, run) == ("done", "")
    for flags, key in ((["--train_args=--seed 1"], "seed"), (["--train_args=--weight_decay 0"], "weight_decay"),
                       (["--train_args=--beta2 0.99"], "beta2"), (["--eval_interval", "10"], "eval_interval"),
                       (["--train_args=--dtype bfloat16"], "dtype"),
                       (["--train_args=--fp8"], "fp8")):   # this config has no fp8: a run from before the flag
        state, detail = run_state(d, one_run(tmp_path, *flags)[0])
        assert state == "conflict" and key in detail, (flags, detail)
    assert run_state(d, one_run(tmp_path, "--train_args=--compile --loss chunked")[0])[0] == "done"   # speed only
    state, detail = run_state(d, one_run(tmp_path, sha="bbb")[0])       # rebuilt with another tokenizer
    assert state == "conflict" and "tokenizer_sha256" in detail


def test_measured_speeds_count_only_runs_with_the_same_settings(tmp_path):
    run, args = one_run(tmp_path)
    # the same model and flags measured on this CPU (10 s) and on a GPU (0.1 s), and with another batch size (1 s)
    for name, device, batch, elapsed in (("cpu", "cpu", None, 10.0), ("gpu", "cuda:0", None, 0.1),
                                         ("batch", "cpu", 512, 1.0)):
        d = fake_run(tmp_path / "out", name)
        config = json.loads((d / "config.json").read_text())
        train = {**run["train"], "batch_size": batch or run["train"]["batch_size"]}
        env = {**config.get("env", {}), "device": device, "world_size": 1}
        (d / "config.json").write_text(json.dumps({**config, "train": train, "env": env}))
        lines = (d / "log.jsonl").read_text().replace('"elapsed_s": 10.0', f'"elapsed_s": {elapsed}')
        (d / "log.jsonl").write_text(lines)
    run["speed_key"] = bench.speed_key(run["train"], "cpu", 1)
    assert bench.seconds_for(run, bench.measured_speeds(tmp_path / "out"), args) == pytest.approx(
        run["D"] / (run["D"] / 10.0) + 3)      # the CPU run's speed alone (not a median with the GPU's or the
    # batch's), plus the start-up its elapsed time leaves out


def test_runs_sharing_a_gpu_share_its_rate(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(scaling.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(scaling.torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    seconds = {}
    for k in (1, 4):
        run, args = one_run(tmp_path, "--gpus", "all", "--runs_per_gpu", str(k))
        run["speed_key"] = None
        seconds[k] = bench.seconds_for(run, {}, args) - 3                  # less the start-up
    assert seconds[4] == pytest.approx(4 * seconds[1])


def test_dry_run_counts_only_what_a_resumed_run_has_left(tmp_path, capsys):
    run, _ = one_run(tmp_path)
    d = fake_run(tmp_path / "out", run["name"], end=False, data_dir=tmp_path / "data" / "simplified")
    lines = [x for x in (d / "log.jsonl").read_text().splitlines() if json.loads(x)["tokens" if "tokens" in x else
                                                                                    "step"] <= run["D"] // 2]
    last = json.loads(lines[-1])           # steps logged after the last eval (checkpoint) are redone on resume
    lines.append(json.dumps({"event": "step", "step": last["step"] + 10, "tokens": last["tokens"] + 10 * 2048,
                             "val_loss": None, "train_loss": 3.0}))
    (d / "log.jsonl").write_text("\n".join(lines) + "\n")
    left = 1 - scaling.logged_tokens(d, checkpointed=True) / run["D"]
    assert 0.4 < left < 0.6 and scaling.logged_tokens(d) == last["tokens"] + 10 * 2048
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora", "simplified",
                  "--models", "h64-L2", "--series", "", "--dry-run"])
    text = capsys.readouterr().out
    assert " resume " in text and f"compute to launch: {run['C'] * left:.3e} FLOP 6ND" in text, text


def test_flags_the_sweep_sets_cannot_come_through_train_args(tmp_path):
    run, _ = one_run(tmp_path)
    args = ["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora", "simplified",
            "--models", "h64-L2", "--dry-run"]
    for extra, message in [("--max_tokens 5e4", "--max_tokens is the sweep's to set \\(use scaling.py --tokens\\)"),
                           ("--run_name=x", "--run_name is the sweep's to set \\(each run's own"),
                           ("--compile --lr 1e-3", "--lr is the sweep's to set")]:
        with pytest.raises(SystemExit, match=message):
            scaling.main(args + ["--series", "", f"--train_args={extra}"])
    with pytest.raises(SystemExit, match="--train_args '--batch 8': train.py refuses them"):   # no abbreviations:
        scaling.main(args + ["--series", "", "--train_args=--batch 8"])                       # --batch_size is ours
    for extra, message in [("--grad_clip -1", "--grad_clip must be >= 0, got -1.0"),   # refused once, up front,
                           ("--fp8_weight_grad", "--fp8_weight_grad goes with --fp8"),   # not by each run launched
                           ("--compile --compile_mode reduce-overhead --step_graph",
                            "--step_graph captures the whole step in a CUDA graph itself"),
                           ("--dtype float64", "--dtype 'float64': use one of auto, bfloat16, float16, float32"),
                           ("--device tpu", "--device 'tpu': use auto, cpu, cuda, cuda:N or mps"),
                           ("--rope_base 1e-300", "--rope_base must be > 1")]:
        with pytest.raises(SystemExit, match=f"--train_args '{extra}': train.py refuses them \\({message}"):
            scaling.main(args + ["--series", "", f"--train_args={extra}"])
    with pytest.raises(SystemExit, match="""--train_args '--seed "3': No closing quotation \\(they are read as a shell"""):
        scaling.main(args + ["--series", "", '--train_args=--seed "3'])
    if not torch.cuda.is_available():   # planned (a plan for GPUs, printed here), but not launched: said once
        with pytest.raises(SystemExit, match="^--device cuda: this torch .* sees no CUDA GPU; use --device cpu$"):
            scaling.main([a for a in args if a != "--dry-run"] + ["--series", "", "--train_args=--device cuda"])
    for series in ("0,0.5", "1/4", "inf", "nan", "1.5"):   # (0 tokens would have meant a whole epoch)
        with pytest.raises(SystemExit, match=rf"--series '{series}': comma-separated fractions of --tokens in \(0, 1\]"):
            scaling.main(args + ["--series", series])
    with pytest.raises(SystemExit, match="--series 0.0001: a fraction gives .* tokens, less than one step"):
        scaling.main(args + ["--series", "0.0001"])
    with pytest.raises(SystemExit, match="--lr -1.0: a peak learning rate > 0"):
        scaling.main(args + ["--lr", "-1"])
    assert scaling.plan(scaling.parse_args(args + ["--series", "", "--lr", "1.23456e-3"]))[0]["lr"] == 1.23456e-3
    assert [scaling.short(t) for t in (999_499, 999_999, 250_000, 999, 0)] == ["999k", "1M", "250k", "999", "1ep"]
    for flag in ("--threads", "--tokens", "--n_boot"):   # (--tokens -1 was blamed on --series)
        with pytest.raises(SystemExit, match="--warmup_steps, --threads, --tokens and --n_boot >= 0"):
            scaling.main(args + [flag, "-1"])


def test_a_corrupt_run_directory_is_reported_not_a_crash(tmp_path, capsys):
    for name in ("simplified", "unrestricted"):
        dataset(tmp_path / "data", name)
    out, sim = tmp_path / "out", tmp_path / "data" / "simplified"
    fake_run(out, "h64-L2-simplified-1M", data_dir=sim)
    (fake_run(out, "h32-L2-simplified-1M", "h32-L2", data_dir=sim) / "config.json").write_text("[1, 2]")
    (fake_run(out, "h64-L4-simplified-1M", "h64-L4", data_dir=sim) / "config.json").write_text('{"train": 5}')
    with open(fake_run(out, "h128-L2-simplified-1M", "h128-L2", data_dir=sim) / "log.jsonl", "ab") as f:
        f.write(b"\xff\xfe{}\n")   # bytes that are not UTF-8 in a line: skipped, as train.py --resume skips them
    edited = fake_run(out, "h32-L2-unrestricted-1M", "h32-L2", "unrestricted",
                      data_dir=tmp_path / "data" / "unrestricted")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "derived": {**config["derived"], "params": "abc"}}))
    args = ["--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--results_dir", str(tmp_path / "r")]
    scaling.main(args + ["--dry-run"])
    text = capsys.readouterr().out
    for name in ("h32-L2-simplified-1M", "h64-L4-simplified-1M"):     # neither relaunched (it would be overwritten)
        assert f"note: {name} its config.json is not train.py's: not touched (move it away)" in text
    assert "h128-L2-simplified-1M          done" in text
    here = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    assert "12 runs, 7 to launch" in text and f"at a time on this machine ({here}; a guess from FLOPs)" in text
    scaling.main(args + ["--fit_only", "--n_boot", "10"])
    text = capsys.readouterr().out
    assert "12 runs, 7 not launched (--fit_only); N" in text and "compute not launched" not in text   # no estimate
    left_out = {x["run"]: x["why"] for x in json.loads((tmp_path / "r" / "fits.json").read_text())["left_out"]}
    assert left_out["h32-L2-simplified-1M"].startswith("unreadable")
    assert left_out["h64-L4-simplified-1M"].startswith("unreadable")
    assert left_out["h32-L2-unrestricted-1M"] == "unreadable: config.json's derived.params is not a number"
    assert "h128-L2-simplified-1M" not in left_out                                  # (fitted: its evals all read)


def test_failed_runs_are_reported_as_failed_with_their_output(tmp_path, monkeypatch):
    run, args = one_run(tmp_path)
    monkeypatch.setattr(scaling, "launch", lambda jobs, slots, **_: {r["name"]: 1 for r, *_ in jobs})
    with pytest.raises(SystemExit, match=f"1 failed, see {tmp_path / 'out' / run['name'] / 'train.out'}"):
        scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--corpora",
                      "simplified", "--models", "h64-L2", "--series", "", "--results_dir", str(tmp_path / "r")])


def test_dry_run_prints_commands_compute_and_time_and_launches_nothing(tmp_path, capsys):
    for name in ("simplified", "unrestricted"):
        dataset(tmp_path / "data", name)
    out = tmp_path / "out"
    fake_run(out, "h64-L2-simplified-1M", data_dir=tmp_path / "data" / "simplified")
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--dry-run"])
    text = capsys.readouterr().out
    assert "12 runs, 11 to launch" in text and "estimated 0:" in text and "FLOP 6ND" in text
    assert text.count("train.py --model") == 11 and "--run_name h64-L2-simplified-1M" not in text   # done: skipped
    assert sorted(p.name for p in out.iterdir()) == ["h64-L2-simplified-1M"]
    if not torch.cuda.is_available():      # a plan for GPUs, made where none is visible: printed, not a crash
        scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--dry-run",
                      "--train_args=--device cuda --compile"])
        assert "--device cuda --compile" in capsys.readouterr().out
    scaling.main(["--data_root", str(tmp_path / "nowhere"), "--out_dir", str(out), "--dry-run"])   # not built yet
    assert "note: no meta.json in " in capsys.readouterr().out


def test_collect_reports_every_run_it_leaves_out(tmp_path):
    fake_run(tmp_path, "good")
    fake_run(tmp_path, "diverged", diverge=True)
    fake_run(tmp_path, "interrupted", end=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "log.jsonl").write_text("{}\n")
    nan = fake_run(tmp_path, "nan")
    lines = [json.loads(x) for x in (nan / "log.jsonl").read_text().splitlines()]
    lines[3]["val_loss"] = "nan"                            # as train.py writes a non-finite number
    (nan / "log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    runs, problems = collect([tmp_path / n for n in ("good", "diverged", "interrupted", "broken", "nan", "absent")])
    assert [r["name"] for r in runs] == ["good"]
    why = dict(problems)
    assert why.keys() == {"diverged", "interrupted", "broken", "nan", "absent"}
    assert why["diverged"].startswith("diverged") and why["interrupted"].startswith("resume")
    assert "config.json" in why["broken"] and "non-finite" in why["nan"] and why["absent"].startswith("missing")


def test_launch_runs_side_by_side_and_reports_failures(tmp_path, capsys):
    script = ("import sys, time; time.sleep(0.3); print('training...', flush=True) if sys.argv[1] != '3' else None; "
              "sys.exit({'0': 0, '2': 'out/r2 is being trained by another process right now', '3': 9}[sys.argv[1]])")
    jobs = [({"name": f"r{i}", "dir": tmp_path / f"r{i}", "D": 1, "flops_per_token": 1},
             [sys.executable, "-c", script, str(i if i in (2, 3) else 0)], 1.0) for i in range(4)]
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "train.out").write_text("interrupted: an earlier attempt's last line\n")   # (appended to)
    codes = scaling.launch(jobs, [None] * 4, progress_s=0.1)
    assert codes == {"r0": 0, "r1": 0, "r2": 1, "r3": 9}
    text = capsys.readouterr().out
    # the run's own one-line reason, the last line this attempt printed
    assert f"r2: FAILED (exit 1): out/r2 is being trained by another process right now ({tmp_path / 'r2'}" in text
    assert f"r3: FAILED (exit 9): it printed nothing ({tmp_path / 'r3' / 'train.out'})" in text
    assert "progress: 4/4 runs ended (2 failed)" in text
    assert "| 50% done |" in text                       # the failed runs logged no tokens: not counted as done
    assert (tmp_path / "r0" / "train.out").exists()


def test_a_run_finished_by_another_sweep_since_the_plan_is_not_overwritten(tmp_path, capsys, monkeypatch):
    """Two sweeps on one --out_dir: the second planned a restart (--overwrite) of a run the first then finished."""
    run, _ = one_run(tmp_path)
    d = fake_run(tmp_path / "out", run["name"], end=False, ckpt=False, data_dir=str(tmp_path / "data" / "simplified"))
    log = (d / "log.jsonl").read_text()
    real_launch = scaling.launch

    def first_sweep_finishes_it(jobs, slots, recheck=None):
        assert jobs[0][1][-1] == "--overwrite"                          # planned as a restart
        (d / "log.jsonl").write_text(log + json.dumps({"event": "end", "step": 488, "tokens": 999_424}) + "\n")
        return real_launch(jobs, slots, progress_s=0, recheck=recheck)
    monkeypatch.setattr(scaling, "launch", first_sweep_finishes_it)
    scaling.main(["--data_root", str(tmp_path / "data"), "--out_dir", str(tmp_path / "out"), "--results_dir",
                  str(tmp_path / "r"), "--corpora", "simplified", "--models", "h64-L2", "--series", "",
                  "--n_boot", "5"])
    text = capsys.readouterr().out
    assert f"skip {run['name']}: done since the plan (another process?): finished" in text
    assert "progress: 1/1 runs ended, 0 running | 100% done" in text and "\nstart " not in text
    assert not (d / "train.out").exists() and (d / "log.jsonl").read_text().startswith(log)   # nothing launched


def test_launch_gives_each_run_a_gpu_slot(tmp_path, capsys, monkeypatch):
    """--gpus 3,5 --runs_per_gpu 2: four slots; each run sees one GPU (CUDA_VISIBLE_DEVICES), never more than two runs
    on a GPU at a time, and a slot freed by a finished run is reused."""
    script = ("import os, sys, time; t = time.time(); time.sleep(0.4); "
              "print(os.environ['CUDA_VISIBLE_DEVICES'], t, time.time())")
    jobs = [({"name": f"r{i}", "dir": tmp_path / f"r{i}", "D": 1, "flops_per_token": 1},
             [sys.executable, "-c", script], 1.0) for i in range(6)]
    monkeypatch.setattr(scaling.torch.cuda, "device_count", lambda: 6)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    args = scaling.parse_args(["--gpus", "3,5", "--runs_per_gpu", "2"])
    assert args.gpus == ["3", "5"] and args.parallel == 4
    assert scaling.launch(jobs, args.slots, progress_s=10) == {f"r{i}": 0 for i in range(6)}
    spans = [(g, float(a), float(b)) for g, a, b in
             (((tmp_path / f"r{i}" / "train.out").read_text().split()) for i in range(6))]
    assert {g for g, *_ in spans} == {"3", "5"} and "on GPU 5" in capsys.readouterr().out
    for gpu in ("3", "5"):   # at the start of any run, at most 2 runs on its GPU were running
        mine = [(a, b) for g, a, b in spans if g == gpu]
        assert all(sum(a <= t < b for a, b in mine) <= 2 for t, _ in mine)
    for bad in (["--gpus", "0,x"], ["--gpus", "0", "--runs_per_gpu", "0"], ["--gpus", "0,1", "--nproc_per_node", "2"]):
        with pytest.raises(SystemExit, match="--gpus takes 'all' or comma-separated ids"):
            scaling.parse_args(bad)


def test_gpu_slots_interleave_the_gpus_and_follow_the_parents_mask(monkeypatch):
    """Two runs on two GPUs take one each (not both on GPU 0); under CUDA_VISIBLE_DEVICES=2,3 our GPU 0 is the
    system's 2, which is what a child's CUDA_VISIBLE_DEVICES must name."""
    monkeypatch.setattr(scaling.torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert scaling.parse_args(["--gpus", "all", "--runs_per_gpu", "2"]).slots == ["0", "1", "0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert scaling.parse_args(["--gpus", "all"]).slots == ["2", "3"]
    assert scaling.parse_args(["--gpus", "1", "--runs_per_gpu", "2"]).slots == ["3", "3"]
    with pytest.raises(SystemExit, match="torch sees 2 GPUs"):
        scaling.parse_args(["--gpus", "2"])                            # the system's 2 is our 0


def test_gpus_without_a_gpu_or_runs_per_gpu_without_gpus_is_an_error(monkeypatch):
    monkeypatch.setattr(scaling.torch.cuda, "device_count", lambda: 0)
    for bad in (["--gpus", "all"], ["--gpus", "0"]):        # not a silent CPU run
        with pytest.raises(SystemExit, match="torch sees 0 GPUs here.*leave --gpus out"):
            scaling.parse_args(bad)
    with pytest.raises(SystemExit, match="--runs_per_gpu needs --gpus"):
        scaling.parse_args(["--runs_per_gpu", "4"])
    assert scaling.parse_args([]).slots == [None] * scaling.parse_args([]).parallel

# -----------------------------------------------------------------------------
# End to end on fake runs: fits, figures, tables


def results_json(path, run, corpus, flops, accs, tokens_seen=1_000_000 // 2048 * 2048, checkpoint_id=None):
    path.write_text(json.dumps({   # (tokens_seen: fake_run's 1M-token D; its checkpoint is unreadable: its id None)
        "run_dir": f"out/{run}", "checkpoint_id": checkpoint_id, "run_name": run, "corpus": corpus, "model": "h64-L2", "n_params": 1,
        "n_params_non_embedding": 1, "tokens_seen": tokens_seen, "train_flops_6nd": flops, "val_loss": 3.0,
        "results": [{"task": task, "family": "blimp", "shots": 0, "n": 400, "chance": 0.5, "acc": acc,
                     "acc_stderr": 0.02, "acc_norm": None, "acc_norm_stderr": None, "rope_scale": 1, "filtered": True}
                    for task, acc in accs.items()], "generations": []}))


def test_fit_only_on_runs_from_a_known_law_writes_fits_figures_and_table(tmp_path, capsys):
    law = {"simplified": HOFFMANN, "unrestricted": dict(HOFFMANN, E=2.5)}
    out, res = tmp_path / "out", tmp_path / "results"
    for corpus in law:
        dataset(tmp_path / "data", corpus)
        for model in ("h32-L2", "h64-L2", "h64-L4", "h128-L2"):
            fake_run(out, f"{model}-{corpus}-1M", model, corpus, law=law[corpus], data_dir=tmp_path / "data" / corpus)
        for tokens in (250_000, 500_000):
            fake_run(out, f"h64-L2-{corpus}-{tokens // 1000}k", "h64-L2", corpus, tokens, law=law[corpus],
                     diverge=tokens == 500_000 and corpus == "unrestricted", data_dir=tmp_path / "data" / corpus)
    args = ["--data_root", str(tmp_path / "data"), "--out_dir", str(out), "--results_dir", str(res), "--fit_only",
            "--n_boot", "50"]
    (res / "figures").mkdir(parents=True)
    (res / "figures" / "emergence.png").write_bytes(b"an earlier sweep's")   # of other runs: removed, not kept
    scaling.main(args)
    text = capsys.readouterr().out
    assert "no emergence plot" in text and "h64-L2-unrestricted-500k: diverged" in text
    fits = json.loads((res / "fits.json").read_text())
    sim, unr = fits["fits"]["simplified"], fits["fits"]["unrestricted"]
    assert sim["L(N, D)"]["alpha"] == pytest.approx(0.34, abs=0.01) and sim["L(N, D)"]["E"] == pytest.approx(1.69,
                                                                                                           abs=0.02)
    assert unr["L(N, D)"]["E"] == pytest.approx(2.5, abs=0.02)
    for f in (sim, unr):
        assert f["L(N)"]["n"] == 4 and f["L(N)"]["alpha"] > 0 and f["L(N_nonemb)"]["alpha"] > 0
        assert f["L(C)"]["alpha"] > 0 and f["L(C)"]["r2"] > 0.8
    assert sim["L(D)"]["n"] == 3 and "skipped" in unr["L(D)"]          # its 500k run diverged: 2 budgets left
    assert fits["left_out"] == [{"run": "h64-L2-unrestricted-500k", "why": fits["left_out"][0]["why"]}]
    md = (res / "fits.md").read_text()
    assert "Hoffmann et al. 2022 (published)" in md and "| simplified | L(N) |" in md
    assert "- h64-L2-unrestricted-500k: diverged" in md
    for name in ("loss_curves", "loss_vs_N", "loss_vs_D", "loss_vs_C"):
        assert (res / "figures" / f"{name}.png").stat().st_size > 10_000
    assert not (res / "figures" / "emergence.png").exists()

    # evaluate.py's results appear: the emergence plot and its crossings, per task and per family, both corpora; a
    # point is above chance (0.5) where acc - 1.96 stderr is (stderr 0.02: 0.0392 below acc)
    for i, (flops, model) in enumerate(zip((1e12, 1e13, 1e14), ("h32-L2", "h64-L2", "h128-L2"))):
        results_json(res / f"s{i}.json", f"{model}-simplified-1M", "simplified", flops,
                     {"blimp_a": [0.45, 0.55, 0.7][i], "blimp_b": 0.5})
        results_json(res / f"u{i}.json", f"{model}-unrestricted-1M", "unrestricted", flops,
                     {"blimp_a": [0.5, 0.48, 0.6][i]})
    results_json(res / "h48-L3-demo.json", "h48-L3-demo", "simplified", 1e15, {"blimp_c": 0.9})   # not a fitted run
    scaling.main(args)
    fits = json.loads((res / "fits.json").read_text())
    cross = {(x["level"], x["name"], x["corpus"]): x["crossing"] for x in fits["emergence"]}
    z = 1.96 * 0.02
    assert cross[("task", "blimp_a", "simplified")] == pytest.approx(10 ** (12 + (0.5 - 0.45 + z) / 0.1))
    assert cross[("task", "blimp_a", "unrestricted")] == pytest.approx(10 ** (13 + (0.5 - 0.48 + z) / 0.12))
    assert cross[("task", "blimp_b", "simplified")] is None
    # the family's mean 0.475, 0.525, 0.6 has stderr 0.02 * sqrt(2) / 2: 0.525 is not above 0.5 with it
    z_mean = 1.96 * 0.02 * 2 ** 0.5 / 2
    family = 10 ** (13 + (0.5 - 0.525 + z_mean) / 0.075)
    assert cross[("family", "blimp", "simplified")] == pytest.approx(family)
    assert ("family", "blimp", "unrestricted") not in cross    # scored on blimp_a only: its mean is not the family's
    assert ("task", "blimp_c", "simplified") not in cross      # the emergence analysis shows the fitted runs only
    assert {"run": "h48-L3-demo", "why": "evaluated (" + str(res) + "/h48-L3-demo.json) but not one of the fitted "
            "runs: left out of the emergence analysis too"} in fits["left_out"]
    assert f"note: h48-L3-demo: evaluated ({res}/h48-L3-demo.json)" in capsys.readouterr().out   # said, not only kept
    assert (res / "figures" / "emergence.png").stat().st_size > 10_000
    assert f"| blimp | 0 | simplified | 0.5 | {family:.3g} | 0.600 |" in (res / "fits.md").read_text()
    results_json(res / "s2.json", "h128-L2-simplified-1M", "simplified", 1e14, {"blimp_a": 0.7}, tokens_seen=512_000)
    scaling.main(args)                                         # scored at an earlier state of the run: left out, said
    fits = json.loads((res / "fits.json").read_text())
    assert {"run": "h128-L2-simplified-1M", "why": f"{res}/h128-L2-simplified-1M.json scored the run at 512000 tokens, "
            "its log ends at 999424: left out of the emergence analysis (run evaluate.py again)"} in fits["left_out"]
    cross = {(x["level"], x["name"], x["corpus"]): x["crossing"] for x in fits["emergence"]}
    assert cross[("family", "blimp", "simplified")] is None   # its means 0.475, 0.525 without the 0.6 at 1e14
    run_dir = out / "h128-L2-simplified-1M"                   # a readable checkpoint: its results must be of it
    torch.save({"model": {}, "model_config": {"n_embd": 128}, "step": 488, "train_config": {}}, run_dir / "ckpt.pt")
    assert run_checkpoint_id(run_dir) is not None
    results_json(res / "s2.json", "h128-L2-simplified-1M", "simplified", 1e14, {"blimp_a": 0.7, "blimp_b": 0.5},
                 checkpoint_id=run_checkpoint_id(run_dir))
    scaling.main(args)
    cross = {(x["level"], x["name"], x["corpus"]): x["crossing"] for x in json.loads((res / "fits.json").read_text())[
        "emergence"]}
    assert cross[("family", "blimp", "simplified")] == pytest.approx(family)   # kept: the checkpoint it scored
    results_json(res / "s2.json", "h128-L2-simplified-1M", "simplified", 1e14, {"blimp_a": 0.7}, checkpoint_id="0f")
    scaling.main(args)                                         # another checkpoint of that name: left out, said
    assert {"run": "h128-L2-simplified-1M", "why": f"{res}/h128-L2-simplified-1M.json scored another checkpoint of "
            "that name (trained elsewhere or with other settings): left out of the emergence analysis (run "
            "evaluate.py again)"} in json.loads((res / "fits.json").read_text())["left_out"]
    for f in res.glob("[su]*.json"):                           # no run scored on a whole family: no figure, no error
        f.unlink()
    results_json(res / "s0.json", "h32-L2-simplified-1M", "simplified", 1e12, {"blimp_a": 0.5})
    results_json(res / "s1.json", "h64-L2-simplified-1M", "simplified", 1e13, {"blimp_b": 0.5})
    assert (res / "figures" / "emergence.png").exists()       # the last call's, of runs scored on whole families
    scaling.main(args)
    assert not (res / "figures" / "emergence.png").exists() and "emergence.png not drawn" in capsys.readouterr().out


def test_emergence_means_a_family_over_its_tasks():
    res = [{"corpus": "simplified", "train_flops_6nd": 1e12, "results": [
        {"task": "t1", "family": "f", "shots": 0, "chance": 0.5, "acc": 0.4, "acc_stderr": 0.03, "rope_scale": 1},
        {"task": "t2", "family": "f", "shots": 0, "chance": 0.25, "acc": 0.6, "acc_stderr": 0.04, "rope_scale": 2}]}]
    series, n_tasks = emergence(res)
    C, acc, se, chance = series[("family", "f", 0, "simplified")][0]
    assert (C, acc, chance) == (1e12, pytest.approx(0.5), pytest.approx(0.375)) and se == pytest.approx(0.05 / 2)
    # a prompt read with RoPE interpolation counts too (the paper's few-shot setting)
    assert series[("task", "t2", 0, "simplified")] == [(1e12, 0.6, 0.04, 0.25)]
    assert n_tasks == {("f", 0): 2}
    # a run scored on fewer of the family's tasks keeps its task points but gets no family point (it would average
    # other tasks); a task whose majority class beats chance is compared with the majority
    res.append({"corpus": "simplified", "train_flops_6nd": 1e13, "results": [
        {"task": "t1", "family": "f", "shots": 0, "chance": 0.5, "majority": 0.7, "acc": 0.65, "acc_stderr": 0.03}]})
    series, n_tasks = emergence(res)
    assert [p[0] for p in series[("family", "f", 0, "simplified")]] == [1e12] and n_tasks == {("f", 0): 2}
    assert series[("task", "t1", 0, "simplified")] == [(1e12, 0.4, 0.03, 0.5), (1e13, 0.65, 0.03, 0.7)]


def test_a_real_tiny_sweep_launches_then_reuses(tiny_data, tmp_path):
    args = ["--data_root", str(tiny_data.parent), "--corpora", "tiny", "--models", "h32-L2", "--series", "",
            "--tokens", "3072", "--batch_size", "8", "--eval_interval", "1", "--out_dir", str(tmp_path / "out"),
            "--results_dir", str(tmp_path / "res"), "--n_boot", "20"]
    run = subprocess.run([sys.executable, "scaling.py", *args], cwd=Path(scaling.__file__).parent,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "h32-L2-tiny-3.07k: finished" in run.stdout and "1 to launch" in run.stdout
    assert "L(N, D)" in run.stdout and "skipped" in run.stdout          # one run: too few points for any law
    again = subprocess.run([sys.executable, "scaling.py", *args, "--dry-run"], cwd=Path(scaling.__file__).parent,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 to launch" in again.stdout and "start " not in again.stdout
    assert (tmp_path / "res" / "fits.md").exists()


def test_unwritable_output_folders_are_one_line_errors(tmp_path, tiny_data):
    """A --results_dir, --out_dir or --json path that is a file (or not writable): one line naming the flag."""
    import evaluate
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="cannot make the folder .*a_file.*: pass a writable --results_dir"):
        scaling.main(["--fit_only", "--fit_all", "--out_dir", str(tmp_path / "none"), "--results_dir",
                      str(tmp_path / "a_file")])
    with pytest.raises(SystemExit, match="cannot make the folder .*a_file.*: pass a writable --json path"):
        bench.parse_args(["--json", str(tmp_path / "a_file" / "b.json")])
    run = tmp_path / "out" / "r"
    run.mkdir(parents=True)
    (run / "ckpt.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="cannot make the folder .*a_file.*: pass a writable --results_dir"):
        evaluate.main(["--ckpt", str(run), "--tasks", "cloze", "--results_dir", str(tmp_path / "a_file")])
