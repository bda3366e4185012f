"""
report.py: the tables and figures: simplify.py's corpus statistics (corpus_stats.md, rank_frequency.png),
evaluate.py's accuracy tables (results/table.md, table.csv, generations.md), and what scaling.py draws and writes from
its fits: the figures (results/figures/*.png), the fits.md table and the emergence analysis of evaluate.py's results
(the compute from which a task's accuracy stays above its baseline).

    corpus_stats(texts, vocab)               simplify.py's statistics of a corpus (and stats_table, its .md)
    write_tables(results_dir)                accuracy per model and task, in the paper's layout

    plot_curves(runs, path)                  val loss against tokens seen, a panel per corpus
    plot_law(fits, runs, keys, path)         final loss (or the frontier) against N, D or C with the fitted laws
    plot_emergence(results, path)            accuracy of each task family against compute -> crossings
    table(fits, problems, crossings, exact_flops)   fits.md: constants, 95% intervals, R^2, the published ones

Figures are readable in black and white: the corpora differ in line style and marker fill, not only colour.
"""
import collections
import contextlib
import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from fits import flop_per_token
from spans import DELIMITERS, WORD_RE, vocab_bytes   # the filter's word tokens, for the corpus statistics
from files import write_atomic
from results import read_results   # evaluate.py's results/<run>.json files, checked

PUBLISHED = {   # L(N, D) constants to compare ours with (the ones the paper cites)
    "Hoffmann et al. 2022": dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "Besiroglu et al. 2024 (Epoch refit)": dict(E=1.82, A=482.0, B=2085.0, alpha=0.35, beta=0.37)}

# -----------------------------------------------------------------------------
# Figures

STYLE = {"simplified": dict(color="black", ls="-", marker="o", mfc="black"),
         "unrestricted": dict(color="0.4", ls="--", marker="s", mfc="none")}


def style(corpus):
    return STYLE.get(corpus, dict(color="0.6", ls=":", marker="^", mfc="none"))


@contextlib.contextmanager
def figure(path, ncols=1, nrows=1, **kw):
    """with figure(path, ncols, nrows) as axes: draw on the flat list of panels; saved to path on leaving."""
    import matplotlib
    matplotlib.use("Agg")                        # files only, no display needed
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4 * nrows), squeeze=False, **kw)
    yield axes.ravel()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))   # never a half-written figure
    plt.close(fig)


def plain_ticks(ax):
    """Log axes: losses labelled 3.5, not 3.5 x 10^0; on x, besides the decades (10^6), the minor ticks at 2 and
    5 x 10^k are labelled (2e5), so a range of less than a decade still gets labels and a wide one does not crowd."""
    from matplotlib.ticker import FuncFormatter
    if ax.get_yscale() == "log":
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("+0", "").replace("+", "") if v > 0
                                               and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))


def curve(run, per_token=1):
    """A run's val losses against tokens seen (x per_token: compute), the step-0 eval left off the log axis."""
    ok = run["curve_tokens"] > 0
    return per_token * run["curve_tokens"][ok], run["curve_loss"][ok]


def plot_curves(runs, path):
    """Val loss against tokens seen, one panel per corpus, one line per run (grey by model size; line style and
    marker by the run's place in the panel, so runs of one model at several budgets differ)."""
    corpora, sizes = sorted({r["corpus"] for r in runs}), sorted({r["N"] for r in runs})
    with figure(path, len(corpora), sharey=True) as axes:
        for ax, corpus in zip(axes, corpora):
            for i, r in enumerate(sorted((r for r in runs if r["corpus"] == corpus), key=lambda r: (r["N"], r["D"]))):
                ax.plot(*curve(r), ls=["-", "--", "-.", ":"][i % 4], marker="osd^v<>"[i % 7], ms=3,
                        color=str(0.6 * sizes.index(r["N"]) / max(1, len(sizes) - 1)),
                        label=f"{r['model']}, {r['budget']}")
            ax.set(xscale="log", xlabel="tokens seen", ylabel="val loss (nats/token)", title=corpus)
            plain_ticks(ax)
            ax.legend(fontsize=7)


def plot_law(fits, runs, keys, path, exact_flops=False):
    """Final loss (or the frontier) against X with each corpus' fitted law, both corpora on the same axes."""
    names = {"N": "parameters N", "N_nonemb": "non-embedding parameters", "D": "tokens seen D",
             "C": "compute C = " + ("model.flops_per_token() x D" if exact_flops else "6ND") + " (FLOP)"}
    with figure(path, len(keys)) as axes:
        for ax, key in zip(axes, keys):
            skipped = []
            for corpus, f in fits.items():
                s, fit = style(corpus), f[f"L({key})"]
                if key == "C":                           # every run's curve in the background, the frontier on top
                    for i, r in enumerate(r for r in runs if r["corpus"] == corpus):
                        ax.plot(*curve(r, flop_per_token(r, exact_flops)), color=s["color"], ls=s["ls"], lw=0.6,
                                alpha=0.5, label=f"{corpus}: every run's curve" if i == 0 else None)
                if "skipped" in fit:
                    skipped.append(f"{corpus}: not fitted ({fit['skipped'].split(',')[0]})")
                    continue
                x, y = map(np.array, fit["points"])
                ax.plot(x, y, ls="none", marker=s["marker"], mfc=s["mfc"], color=s["color"],
                        label=f"{corpus}: the frontier" if key == "C" else None)
                grid = np.geomspace(x.min(), x.max(), 50)
                ax.plot(grid, np.exp(fit["alpha"] * (fit["log_x_c"] - np.log(grid))), color=s["color"], ls=s["ls"],
                        label=f"{corpus}: alpha {fit['alpha']:.3f}" + ("" if "ci" not in fit else " [{:.3g}, {:.3g}]"
                                                                       .format(*fit["ci"]["alpha"]))
                        + f", R$^2$ {fit['r2']:.3f}")
            ax.set(xscale="log", yscale="log", xlabel=names[key], ylabel="val loss (nats/token)",
                   title=f"L({key}) = ({key}_c / {key})^alpha")
            plain_ticks(ax)
            ax.text(0.02, 0.02, "\n".join(skipped), transform=ax.transAxes, fontsize=7, va="bottom")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)


# -----------------------------------------------------------------------------
# Corpus statistics: what simplify.py writes beside the datasets (corpus_stats.json, .md, rank_frequency.png)


def corpus_stats(texts, vocab):
    """Statistics of the training text over the filter's word tokens (numbers excluded).
    -> (dict, sorted frequencies)"""
    # counted document by document: a list of every word would take ~54 bytes a word (~85 GB at the paper's scale)
    counts, n_words, types_100k, sentences = collections.Counter(), 0, set(), 0
    for t in texts:
        # a span's end ends a sentence too: most spans stop mid-sentence (before a word out of the vocabulary)
        low = t.encode("utf-8", "surrogatepass").lower().replace(b"<s>", b" ").replace(b"</s>", b"\n")
        words = []
        for piece in re.split(rb"[.?!\n]+", low):   # sentences: the pieces between . ? ! and newlines that hold a word
            # the filter's word tokens, numbers left out; a word the kernel glued to a delimiter after a digit
            # ("3 cats" -> "3", " cats") counted as the word itself
            found = [w.lstrip(DELIMITERS) for w in WORD_RE.findall(piece) if not w.isdigit()]
            sentences += bool(found)
            words += found
        counts.update(words)
        types_100k.update(words[:max(100_000 - n_words, 0)])  # the types of the first 100k words
        n_words += len(words)
    freq = np.array(sorted(counts.values(), reverse=True), float)
    top = min(len(freq), 1000)  # Zipf slope (-s for frequency ~ rank^-s): least squares of log f on log rank, 1..1000
    zipf = float(np.polyfit(np.log(np.arange(1, top + 1)), np.log(freq[:top]), 1)[0]) if top > 1 else float("nan")
    vb = vocab_bytes(vocab)  # type/token ratio depends on size: compare on the first 100k words of each
    return dict(train_words=n_words, types=len(counts),
                oov_rate=sum(n for w, n in counts.items() if w not in vb) / max(n_words, 1),
                mean_sentence_words=n_words / max(sentences, 1),
                type_token_ratio_100k=len(types_100k) / max(min(n_words, 100_000), 1), zipf_slope=zipf), freq


def stats_table(a, b):
    """corpus_stats.md: the statistics of the two corpora side by side, and what each one counts."""
    rows = ["| statistic | simplified | unrestricted |", "|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.4g}"
    for k in a:
        rows.append(f"| {k} | {fmt(a[k])} | {fmt(b.get(k))} |")
    rows += ["", "docs_out, words_out, kept_word_fraction: for simplified, what the filter kept of the source (all of "
             "it, also beyond --max_train_tokens); for unrestricted, the raw documents taken to match its tokens, "
             "and docs_in/words_in its pool (the --control_fraction share of the source: the control's tokenizer "
             "learns from that pool, up to --tokenizer_sample_mb). mean_span_words: whitespace-separated words per "
             "span, over all the filtered text. train_* and the statistics below them: the training text of each "
             "(the train split only, so train_words is usually the smaller). words_in/words_out count "
             "whitespace-separated words, train_words the filter's word tokens (numbers left out, a contraction "
             "two: don't = don + t). mean_sentence_words: words per piece of text between . ? ! newlines and span "
             "ends (most spans stop mid-sentence, before a word out of the vocabulary)."]
    return "\n".join(rows)


def plot_rank_frequency(freqs, path):
    """Word rank-frequency (Zipf) plot of each corpus' training text, log-log: {name: sorted frequencies} -> path."""
    with figure(path) as (ax,):
        for (name, freq), ls in zip(freqs.items(), ["-", "--"]):
            ax.loglog(np.arange(1, len(freq) + 1), freq / freq.sum(), ls, color="black", label=name)
        ax.set(xlabel="rank", ylabel="relative frequency", title="Word rank-frequency (Zipf) plot")
        ax.legend()

# -----------------------------------------------------------------------------
# Tables of evaluate.py's results in the paper's layout (rows = models, columns = tasks)


BASELINES = ("chance", "majority", "unigram")   # what a model must beat (evaluate.py: a results entry's fields)


def table_rows(runs, shots, cols):
    """Cells of one table: a row per model, then the baselines' rows (chance, majority, unigram) and the
    example-count row."""
    seen = {k: {c: set() for c in cols} for k in BASELINES + ("n",)}   # over the runs: one value, or a range
    rows = []
    for r in runs:
        got = {e["task"]: e for e in r["results"] if e["shots"] == shots}
        for c in cols:
            for k in seen:
                seen[k][c] |= {got[c][k]} if c in got and got[c].get(k) is not None else set()
        accs = [got[c]["acc"] for c in cols if c in got]
        avg = f"{100 * np.mean(accs):.1f}" if accs and len(accs) == len(cols) else "-"   # only over a complete row
        rows.append([r["run_name"], r["model"] or "-", r["corpus"], f"{r['n_params'] / 1e6:.2f}M",
                     *[f"{100 * got[c]['acc']:.1f}" if c in got else "-" for c in cols], avg])
    # runs scored on different examples (--limit, another vocabulary) show the range of each: compare with care
    def cell(values, fmt):
        return "-".join(fmt(v) for v in sorted({min(values), max(values)})) if values else "-"
    for baseline in BASELINES:
        x = [seen[baseline][c] for c in cols]
        rows.append([baseline, "", "", "", *[cell(v, lambda v: f"{100 * v:.1f}") for v in x],
                     f"{100 * np.mean([min(v) for v in x]):.1f}" if cols and all(len(v) == 1 for v in x) else "-"])
    rows.append(["n", "", "", "", *[cell(seen["n"][c], str) for c in cols], ""])
    return rows


def write_text(path, text):
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline=""))


def write_tables(results_dir):
    """results/table.md (one table per number of shots), table.csv (all of them, a `shots` column) and
    generations.md, from every results JSON in results_dir. Returns the Markdown lines."""
    runs, out = read_results(results_dir), Path(results_dir)
    entries = [e for r in runs for e in r["results"]]
    all_cols = list(dict.fromkeys(e["task"] for e in entries))
    head = ["run", "model", "corpus", "params"]
    md = ["# Results", "", "Accuracy (%); rows = models, columns = tasks. `avg`: the mean over the columns; "
          "`chance`: the accuracy of guessing; `majority`: of always giving the commonest right answer (the filtered "
          "sets are unbalanced: a model that always says the same can beat chance); `unigram` (minimal pairs): of "
          "a model that ignores context, each sentence scored by its tokens' frequencies in the run's training text; "
          "`n`: examples per task, after the vocabulary filter (a range where runs were scored on different numbers "
          "of examples).", ""]
    lines = [["shots", *head, *all_cols, "avg"]]
    for shots in sorted({e["shots"] for e in entries}):
        cols = [c for c in all_cols if any(e["task"] == c and e["shots"] == shots for e in entries)]
        rows = table_rows(runs, shots, cols)
        md += [f"## {shots}-shot", "", "| " + " | ".join([*head, *cols, "avg"]) + " |",
               "|" + "---|" * len(head) + "---:|" * (len(cols) + 1), *("| " + " | ".join(r) + " |" for r in rows), ""]
        at = {c: i for i, c in enumerate(cols, start=len(head))}      # the CSV has every column, blank where n/a
        lines += [[shots, *row[:len(head)], *(row[at[c]] if c in at else "" for c in all_cols), row[-1]]
                  for row in rows]
    write_text(out / "table.md", "\n".join(md) + "\n")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    write_text(out / "table.csv", buf.getvalue())
    cell = lambda s: s.replace("|", "\\|").replace("\n", " / ")  # noqa: E731
    gen = ["# Generations", "", "Sampled continuations of each prompt (seed and temperature: see each results "
           "JSON). A sample ends at the first end of a span or document (</s>, <|endoftext|>): the simplified models, "
           "trained on short spans, often end after a few words.",
           "", "| prompt | " + " | ".join(r["run_name"] for r in runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for p in dict.fromkeys(g["prompt"] for r in runs for g in r.get("generations", [])):
        texts = [next((g["text"] for g in r.get("generations", []) if g["prompt"] == p), "") for r in runs]
        gen.append(f"| {cell(p)} | " + " | ".join(cell(t) for t in texts) + " |")
    write_text(out / "generations.md", "\n".join(gen) + "\n")
    return md

# -----------------------------------------------------------------------------
# Emergence: the compute from which accuracy stays above its baseline (the best of chance, the majority class and,
# for minimal pairs, a unigram model), counting a point as above when the lower end of its 95% interval is:
# acc - Z95 * stderr

Z95 = 1.96


def baseline_crossing(C, low, baseline):
    """The compute from which `low` (the accuracy, or the lower end of its interval) stays above the baseline:
    interpolated (in log C) between the last point at or below it and the next one; C[0] if every point is above,
    None if the last point is not."""
    below = np.flatnonzero(np.asarray(low) <= baseline)
    if not len(below):
        return float(C[0])
    i = below[-1]
    if i == len(C) - 1:
        return None
    t = (baseline - low[i]) / (low[i + 1] - low[i])
    return float(np.exp(np.log(C[i]) + t * (np.log(C[i + 1]) - np.log(C[i]))))


def emergence(results):
    """evaluate.py's results -> series {(level, name, shots, corpus): [(C, acc, stderr, baseline)] by C} for every
    task and every task family, and {(family, shots): number of tasks}. A task's baseline is the highest of chance,
    its majority-class accuracy (a filtered set can be unbalanced: always saying "negative" gets 65% of SST-2's) and,
    for minimal pairs, a unigram model's (sentences of commoner words win: evaluate.unigram_accuracy).
    A family's point is its mean accuracy over its tasks (stderr of that mean) for a run scored on every task of the
    family at that number of shots: a run with fewer would average other tasks (it keeps its per-task points).
    k-shot prompts longer than the context count too (read with RoPE interpolation, as the paper did)."""
    def family(e):
        return e.get("family", e["task"]), e.get("shots", 0)
    scored = [(d, [e for e in d["results"] if e.get("acc") is not None]) for d in results
              if d["train_flops_6nd"] is not None]   # (a pretrained model: compute unknown, not on these axes)
    members = {}                                              # (family, shots) -> every task of it scored anywhere
    for _, entries in scored:
        for e in entries:
            members.setdefault(family(e), set()).add(e["task"])
    tasks, families = {}, {}
    for d, entries in scored:
        by_family = {}
        for e in entries:
            key = (e.get("shots", 0), d["corpus"])
            point = (d["train_flops_6nd"], e["acc"], e.get("acc_stderr") or 0.0,
                     max(e.get(b) or 0.0 for b in BASELINES))
            tasks.setdefault(("task", e["task"], *key), []).append(point)
            by_family.setdefault(family(e), {})[e["task"]] = point
        for (name, shots), got in by_family.items():
            if got.keys() == members[(name, shots)]:
                families.setdefault(("family", name, shots, d["corpus"]), []).append(np.array(list(got.values())))
    series = {k: sorted(v) for k, v in tasks.items()}
    for k, points in families.items():
        series[k] = sorted((p[0, 0], p[:, 1].mean(), np.sqrt((p[:, 2] ** 2).sum()) / len(p), p[:, 3].mean())
                           for p in points)                  # p: (tasks, 4): C, acc, stderr, baseline
    return series, {k: len(v) for k, v in members.items()}


def plot_emergence(results, path):
    """Mean accuracy of each task family against training compute, one panel per (family, shots), a line per corpus
    with 95% error bars, its baseline (emergence(): chance, majority or unigram) dotted, and a triangle where the
    corpus' accuracy rises above it for good: where the lower end of its 95% interval does (one right answer of 261
    on a task whose chance is 0 is not an ability). -> [{level (task | family), name, shots, corpus, baseline,
    crossing, last_acc}] for every task and family."""
    (series, n_tasks), crossings = emergence(results), []
    for (level, name, shots, corpus), pts in sorted(series.items()):
        C, acc, err, base = map(np.array, zip(*pts))
        low = acc - Z95 * err
        crossings.append(dict(level=level, name=name, shots=shots, corpus=corpus, baseline=float(base.mean()),
                              crossing=baseline_crossing(C, low, base.mean()), last_acc=float(acc[-1]),
                              above_throughout=bool((low > base.mean()).all())))
    panels = sorted({(name, shots) for level, name, shots, _ in series if level == "family"})
    if not panels:   # no run scored every task of a family: the per-task crossings alone
        print(f"no run was scored on every task of a family: {path} not drawn (evaluate.py with whole families)")
        return crossings
    with figure(path, min(4, len(panels)), math.ceil(len(panels) / 4)) as axes:
        for ax, (family, shots) in zip(axes, panels):
            mine = [x for x in crossings if (x["level"], x["name"], x["shots"]) == ("family", family, shots)]
            for x in mine:
                C, acc, err, _ = map(np.array, zip(*series[("family", family, shots, x["corpus"])]))
                s = style(x["corpus"])
                yerr = [np.minimum(acc, Z95 * err), Z95 * err]   # (an accuracy's interval stops at 0)
                ax.errorbar(C, acc, yerr=yerr, color=s["color"], ls=s["ls"], marker=s["marker"], mfc=s["mfc"],
                            ms=4, capsize=2, label=f"{x['corpus']} (95% intervals)")
                ax.axhline(x["baseline"], color=s["color"], ls=":", lw=1, label=f"{x['corpus']}'s baseline")
                if x["crossing"] is not None:   # (the two corpora's may coincide: the open one drawn larger)
                    ax.plot([x["crossing"]], [x["baseline"]], marker="^", ms=13 if s["mfc"] == "none" else 8,
                            color=s["color"], mfc=s["mfc"], ls="none")
            n = n_tasks[(family, shots)]
            ax.set(xscale="log", xlabel="training compute 6ND (FLOP)", ylabel="accuracy",
                   title=f"{family}, {shots}-shot" + (f" (mean of {n} tasks)" if n > 1 else ""))
            ax.legend(fontsize=7)
        for ax in axes[len(panels):]:
            ax.axis("off")
    return crossings


# -----------------------------------------------------------------------------
# fits.md


FEW_UNITS = 5   # below this many runs (or points) to resample, a bootstrap interval is far narrower than 95%


def ci(fit, key):
    lo, hi = fit.get("ci", {}).get(key, [math.nan] * 2)
    return f"{fit[key]:.3g} [{lo:.3g}, {hi:.3g}]" + ("*" if fit.get("units", FEW_UNITS) < FEW_UNITS else "")


def table(fits, problems, crossings, exact_flops):
    """fits.md: the constants with 95% bootstrap intervals and R^2, the published ones beside ours."""
    c = "model.flops_per_token() x D" if exact_flops else "6ND"
    out = ["# Scaling-law fits", "", f"N counts every parameter (N_nonemb leaves out the embedding and the head), "
           f"D = tokens seen, C = {c}. Brackets: 95% bootstrap percentile intervals; L(C) and L(N, D) resample "
           "runs (one run's evals are not independent: L(C) the frontier's runs, the frontier itself fixed), the "
           "others final losses, one per run. *: from fewer than "
           f"{FEW_UNITS} runs, where a bootstrap is the spread of a few refits, much narrower than a 95% interval "
           "(with 3 points it holds the true exponent about two times in three).", "",
           "## Kaplan et al.: L(X) = (X_c / X)^alpha", "", "| corpus | law | fitted to | X_c | alpha | R^2 |",
           "|---|---|---|---|---|---|"]
    for corpus, f in fits.items():
        for law in ("L(N)", "L(N_nonemb)", "L(D)", "L(C)"):
            fit = f[law]
            cells = (["skipped: " + fit["skipped"], "", ""] if "skipped" in fit
                     else [ci(fit, "x_c"), ci(fit, "alpha"), f"{fit['r2']:.3f}"])
            out.append(f"| {corpus} | {law} | {fit['about']} | " + " | ".join(cells) + " |")
    out += ["", "## Hoffmann et al.: L(N, D) = E + A / N^alpha + B / D^beta", "",
            "Summed Huber loss (delta 1e-3) on log-loss residuals, L-BFGS from a grid of starts.", "",
            "| fit | points | E | A | B | alpha | beta | R^2 |", "|---|---|---|---|---|---|---|---|"]
    for corpus, f in fits.items():
        fit = f["L(N, D)"]
        cells = (["skipped: " + fit["skipped"]] + [""] * 5 if "skipped" in fit else
                 [ci(fit, k) for k in ("E", "A", "B", "alpha", "beta")] + [f"{fit['r2']:.3f}"])
        about = fit["about"] + (f" (warning: {fit['warning']})" if "warning" in fit else "")
        out.append(f"| {corpus} | {about} | " + " | ".join(cells) + " |")
    for who, p in PUBLISHED.items():
        out.append(f"| {who} (published) | Chinchilla's runs | " + " | ".join(f"{p[k]:g}" for k in p) + " | |")
    if crossings:
        out += ["", "## Emergence: compute (6ND) from which accuracy stays above its baseline", "",
                "Task families (mean accuracy over their tasks); a task's baseline is the best of chance, always "
                "giving the commonest right answer, and (minimal pairs) a unigram model of the corpus, which ignores "
                "context and word order; a family's is their mean; above it means the lower end of the accuracy's "
                "95% interval (acc - 1.96 stderr) is; every task's crossing is in fits.json.", "",
                "| family | shots | corpus | baseline | crossing | accuracy at the largest compute |",
                "|---|---|---|---|---|---|"]
        out += [f"| {x['name']} | {x['shots']} | {x['corpus']} | {x['baseline']:.3g} | "
                + ("never" if x["crossing"] is None else ("<= " if x["above_throughout"] else "")
                   + f"{x['crossing']:.3g}") + f" | {x['last_acc']:.3f} |" for x in crossings if x["level"] == "family"]
    out += ["", "## Runs left out", ""] + ([f"- {name}: {why}" for name, why in problems] or ["none"])
    return "\n".join(out) + "\n"
