import json
import re

import pytest
import torch

import bench


def test_benchmark_prints_both_paths_and_their_ratio(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        results = bench.main(["--models", "h32-L2", "--steps", "2", "--batch_size", "4", "--vocab_size", "2000",
                              "--loss_chunk", "100", "--threads", "1", "--json", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    rows = {}
    for path in ("plain", "fast"):
        m = re.search(rf"h32-L2 +{path} +micro 4 +\| tokens/s +([\d.]+)k \| step +([\d.]+) ms \| MFU +n/a \| "
                      rf"peak mem +(n/a|[\d.]+ GiB) \| first loss ([\d.]+)", out)
        assert m, (path, out)
        rows[path] = m
        tokens_per_s, step_ms = float(m[1]) * 1e3, float(m[2])
        assert tokens_per_s == pytest.approx(4 * 128 / (step_ms / 1e3), rel=0.01)   # tokens/s = B*T / step time
    ratio = re.search(r"h32-L2 +fast/plain: tokens/s x([\d.]+), peak mem (x[\d.]+|n/a), first loss difference", out)
    assert ratio, out
    assert float(ratio[1]) == pytest.approx(float(rows["fast"][1]) / float(rows["plain"][1]), rel=0.02)
    # the same weights and tokens: the two paths start from the same loss, about ln V for a fresh model
    r = results[0]
    assert r["fast"]["first_loss"] == pytest.approx(r["plain"]["first_loss"], abs=1e-4)
    assert r["plain"]["first_loss"] == pytest.approx(7.6, abs=0.3)        # ln 2000 = 7.60
    assert r["fast"]["loss_chunk"] == 100 and r["plain"]["loss_chunk"] == 0
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["vocab_size"] == 2000 and saved["results"][0]["fast_over_plain"]["tokens_per_s"] > 0


def test_benchmark_refuses_bad_flags():
    with pytest.raises(SystemExit, match="--models: model name 'gpt2'"):
        bench.parse_args(["--models", "gpt2"])
    with pytest.raises(SystemExit, match="must divide --batch_size 8"):
        bench.parse_args(["--batch_size", "8", "--fast_micro_batch_size", "3"])
