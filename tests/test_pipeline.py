"""The whole chain in miniature, as the README's main command runs it: simplify -> scaling (train.py runs) ->
evaluate -> scaling --fit_only. Small enough for CI (well under a minute)."""
import json

import evaluate
import scaling
import simplify
import train
from test_simplify import _corpus


def test_raw_text_to_tables_and_figures(tmp_path, capsys):
    src, vocab = _corpus(tmp_path / "src", n_docs=160)
    data, out, res = tmp_path / "data", tmp_path / "out", tmp_path / "results"
    simplify.main(["--source", src, "--vocab", vocab, "--out_dir", str(data), "--vocab_size", "300",
                   "--min_span_len", "3", "--val_fraction", "0.2", "--workers", "1"])
    grid = ["--models", "h32-L2,h64-L2", "--data_root", str(data), "--tokens", "6144", "--series", "",
            "--batch_size", "4", "--warmup_steps", "2", "--eval_interval", "3", "--threads", "1", "--parallel", "2",
            "--out_dir", str(out), "--results_dir", str(res), "--n_boot", "20"]
    scaling.main(grid)
    runs = sorted(p.parent for p in out.glob("*/ckpt.pt"))
    assert [p.name for p in runs] == ["h32-L2-simplified-6.14k", "h32-L2-unrestricted-6.14k",
                                      "h64-L2-simplified-6.14k", "h64-L2-unrestricted-6.14k"]
    for run in runs:   # every run finished its 12 steps of 4 x 128 tokens and logged an end event
        end = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
        assert end["event"] == "end" and end["step"] == 12 and end["tokens"] == 6144
    evaluate.main(["--ckpt", *map(str, runs), "--tasks", "templates_anaphor_number_agreement,cloze",
                   "--shots", "0,1", "--limit", "20", "--results_dir", str(res), "--max_new_tokens", "4"])
    capsys.readouterr()
    evaluate.main(["--ckpt", *map(str, runs), "--tasks", "templates_anaphor_number_agreement,cloze",
                   "--shots", "0,1", "--limit", "20", "--results_dir", str(res), "--max_new_tokens", "4"])
    assert capsys.readouterr().out.count("up to date") == 4   # a second run reuses every model's results
    table = (res / "table.md").read_text()
    assert all(r.name in table for r in runs)
    scaling.main(grid + ["--fit_only"])
    fits = json.loads((res / "fits.json").read_text())
    assert set(fits["fits"]) == {"simplified", "unrestricted"} and len(fits["runs"]) == 4
    for name in ("loss_curves", "loss_vs_N", "loss_vs_D", "loss_vs_C", "emergence"):
        assert (res / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "alpha" in (res / "fits.md").read_text()


def test_every_script_help_shows_the_defaults(capsys):
    for main, flag, shown in ((simplify.main, "--min_span_len", "(default: 8)"),
                              (scaling.main, "--n_boot", "(default: 1000)"),
                              (evaluate.main, "--shots", "(default: 0,3)"),
                              # a help text that names the word "default" without giving one: the default is added
                              (train.main, "--compile_mode", "(--compile) (default: default)"),
                              (evaluate.main, "--threads", "(0: torch's default) (default: 0)")):
        try:
            main(["--help"])
        except SystemExit:
            pass
        text = " ".join(capsys.readouterr().out.split("options:")[1].split())   # wrapped to the terminal
        assert shown in text[text.index(f" {flag} ") + 1:].split(" --")[0], main.__module__
        if main is train.main:   # its --run_name said "default: <model>-<dataset directory name> (default: '')"
            assert text[text.index(" --run_name ") + 1:].split(" --")[0] == ("--run_name RUN_NAME default: "
                                                                             "<model>-<dataset directory name>")
