import hashlib
import importlib.util
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch

import train
from model import GPT, autocast_for, load_checkpoint
from dataset import TokenBlocks, block_ids, unigram_baseline
from step import keep_grads, load_optimizer_state, lr_at, set_lr
from train import TrainConfig, parse_args

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(model="h32-L2", block_size=32, batch_size=8, lr=3e-3, warmup_steps=5, eval_interval=10, log_interval=1,
            eval_blocks=16, sample_tokens=0, threads=1, device="cpu")  # one thread: tiny matmuls on a shared machine


def run(data, out, **overrides):
    cfg = TrainConfig(data_dir=str(data), out_dir=str(out), **{**TINY, **overrides})
    threads = torch.get_num_threads()
    try:
        return train.train(cfg)
    finally:
        torch.set_num_threads(threads)   # leave the other tests as they were


def assert_runs_agree(out, name, other, steps, rel=1e-5):
    """Two runs of the same model on the same data in out/: the same steps logged, losses and grad norms, and final
    weights, to rounding."""
    logged = records(out / name), records(out / other)
    assert [r["step"] for r in logged[0]] == [r["step"] for r in logged[1]] == list(range(steps + 1))
    for a, b in zip(*logged):
        for key in ("train_loss", "val_loss", "grad_norm"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=rel, abs=rel / 10), (a["step"], key)
    weights = [torch.load(out / n / "ckpt.pt", weights_only=True)["model"] for n in (name, other)]
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], atol=1e-5, rtol=1e-4)


def records(run_dir, event="step"):
    lines = [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]
    return [r for r in lines if r["event"] == event]


def test_lr_schedule_values():
    peak, total, warm = 1e-3, 110, 10
    assert lr_at(0, total, peak, warm) == pytest.approx(1e-4)          # linear warmup
    assert lr_at(4, total, peak, warm) == pytest.approx(5e-4)
    assert lr_at(9, total, peak, warm) == pytest.approx(peak)
    assert lr_at(10, total, peak, warm) == pytest.approx(peak)         # the cosine starts at the peak
    assert lr_at(60, total, peak, warm) == pytest.approx(peak * (0.5 + 0.5 * math.cos(math.pi / 4)))
    assert lr_at(110, total, peak, warm) == pytest.approx(peak / 2)    # a quarter cycle ends at half the peak
    lrs = [lr_at(s, total, peak, warm) for s in range(10, 110)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lr_at(60, total, peak, warm, final_frac=0.1) == pytest.approx(peak * (0.1 + 0.9 * math.cos(math.pi / 4)))


def test_optimizer_flags_reach_adamw_the_clipping_and_the_schedule(tiny_data, tmp_path):
    """Non-default AdamW settings end up in the optimizer (the checkpoint's param_groups), --grad_clip clips (after
    one step Adam's first moment is (1 - beta1) x the clipped gradient), --final_lr_frac shapes the logged LRs."""
    flags = dict(max_tokens=4 * 256, lr=2e-3, warmup_steps=1, final_lr_frac=0.1, beta1=0.8, beta2=0.9, eps=1e-3,
                 weight_decay=0.05, eval_interval=10)

    def first_moment_norm(run_name):
        state = torch.load(tmp_path / run_name / "ckpt.pt", weights_only=True)["optimizer"]["state"]
        return torch.stack([s["exp_avg"].norm() for s in state.values()]).norm().item()

    for clip in (0.1, 0.0):                                              # 0: off
        run(tiny_data, tmp_path, run_name=f"clip{clip}", stop_at_step=1, grad_clip=clip, **flags)
        grad_norm = records(tmp_path / f"clip{clip}")[1]["grad_norm"]   # logged before clipping
        assert grad_norm > 0.2                                           # so 0.1 clips
        assert first_moment_norm(f"clip{clip}") == pytest.approx(0.2 * (clip or grad_norm), rel=1e-4)
    [group] = torch.load(tmp_path / "clip0.1" / "ckpt.pt", weights_only=True)["optimizer"]["param_groups"]
    assert (tuple(group["betas"]), group["eps"], group["weight_decay"]) == ((0.8, 0.9), 1e-3, 0.05)
    run(tiny_data, tmp_path, run_name="clip0.1", resume=True, grad_clip=0.1, **flags)
    lrs = [r["lr"] for r in records(tmp_path / "clip0.1")[1:]]
    assert lrs == pytest.approx([lr_at(s, 4, 2e-3, 1, final_frac=0.1) for s in range(4)])
    assert lrs[-1] == pytest.approx(2e-3 * (0.1 + 0.9 * math.cos(math.pi / 3)))   # 2/3 of the quarter cycle
    [group] = torch.load(tmp_path / "clip0.1" / "ckpt.pt", weights_only=True)["optimizer"]["param_groups"]
    assert group["lr"] == lrs[-1] and group["eps"] == 1e-3 and group["weight_decay"] == 0.05


def test_val_loss_is_the_mean_over_tokens_not_over_batches(tiny_data):
    """10 blocks in micro-batches of 4: the last batch of 2 weighs 2/10, not 1/3. A stand-in model whose loss is the
    mean target id makes the expected number plain numpy."""
    class MeanTarget(torch.nn.Module):
        def forward(self, x, y):
            return None, y.float().mean()

    data = TokenBlocks(tiny_data / "val.bin", "uint16", 32, 259)
    ids = np.arange(10) * 3
    model = MeanTarget()
    loss = train.val_loss(model, data, ids, 4, "cpu", autocast_for("cpu", "float32"), 0, 1)
    _, y = data.get(ids, "cpu")
    assert loss == pytest.approx(y.double().mean().item(), rel=1e-6)
    batch_means = [y[s:s + 4].double().mean().item() for s in (0, 4, 8)]
    assert abs(np.mean(batch_means) - loss) > 1e-3                       # the test can tell the two apart
    assert model.training                                                 # back in training mode


def test_block_order_is_a_seeded_shuffle_and_ranks_split_the_batch():
    n = 50
    epoch0, epoch1 = block_ids(0, n, n, seed=1), block_ids(n, n, n, seed=1)
    assert sorted(epoch0) == list(range(n)) and sorted(epoch1) == list(range(n))   # each block once per epoch
    assert not np.array_equal(epoch0, epoch1) and not np.array_equal(epoch0, block_ids(0, n, n, seed=2))
    assert np.array_equal(block_ids(45, 10, n, 1), np.concatenate([epoch0[45:], epoch1[:5]]))
    step_batch = block_ids(16, 8, n, 1)   # step 2 of batch 8; two processes take halves of it
    assert np.array_equal(np.concatenate([block_ids(16, 4, n, 1), block_ids(20, 4, n, 1)]), step_batch)


def test_unigram_baseline_by_hand(tmp_path):
    np.array([0, 0, 1, 2], np.uint16).tofile(tmp_path / "t.bin")
    np.array([0, 3], np.uint16).tofile(tmp_path / "v.bin")
    b = unigram_baseline(*(TokenBlocks(tmp_path / f"{n}.bin", "uint16", 1, 4) for n in ("t", "v")))
    p = np.array([3, 2, 2, 1]) / 8                         # add-one counts
    assert b["unigram_train_entropy"] == pytest.approx(-(0.5 * np.log(p[0]) + 0.25 * np.log(p[1] * p[2])))
    assert b["unigram_val_xent"] == pytest.approx(-(np.log(p[0]) + np.log(p[3])) / 2)


def test_blocks_are_the_file_cut_in_T_with_targets_shifted_by_one(tmp_path):
    np.arange(23, dtype=np.uint16).tofile(tmp_path / "t.bin")        # 23 tokens, T = 5: (23 - 1) // 5 = 4 blocks
    data = TokenBlocks(tmp_path / "t.bin", "uint16", 5, 100)
    x, y = data.get(np.array([3, 0, 3]), "cpu")
    assert data.n == 4 and x.dtype == y.dtype == torch.int64
    assert x.tolist() == [[15, 16, 17, 18, 19], [0, 1, 2, 3, 4], [15, 16, 17, 18, 19]]
    assert y.tolist() == [[16, 17, 18, 19, 20], [1, 2, 3, 4, 5], [16, 17, 18, 19, 20]]   # the next token of each
    np.arange(25, dtype=np.uint16).tofile(tmp_path / "t.bin")        # 25 tokens: 4 blocks too (a 5th has no targets)
    assert TokenBlocks(tmp_path / "t.bin", "uint16", 5, 100).n == 4


def test_cli_flags_come_from_the_dataclass(capsys):
    cfg = parse_args(["--lr", "1e-3", "--max_tokens", "2.1e9", "--compile", "--model", "h256-L4"])
    assert cfg.lr == 1e-3 and cfg.max_tokens == 2_100_000_000 and cfg.compile is True and cfg.model == "h256-L4"
    assert parse_args([]) == TrainConfig()
    assert parse_args(["--max_tokens", "12345678901234567891"]).max_tokens == 12345678901234567891   # exact, no float
    for bad in ("2.5", "abc", "1e999"):                   # a readable error, not "invalid _int value"
        with pytest.raises(SystemExit):
            parse_args(["--max_tokens", bad])
        assert f"{bad!r} is not a whole number" in capsys.readouterr().err
    helps = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    for f in fields(TrainConfig):
        assert f"--{f.name}" in helps
    assert "global batch in sequences" in helps


def test_tiny_run_learns_and_logs_everything(tiny_data, tmp_path):
    summary = run(tiny_data, tmp_path, max_tokens=60 * 8 * 32, run_name="learn")
    run_dir = Path(summary["run_dir"])
    steps = records(run_dir)
    first, last = steps[0], steps[-1]
    assert first["step"] == 0 and first["val_loss"] == pytest.approx(math.log(259), abs=0.1)  # uniform at init
    assert last["step"] == 60 and last["tokens"] == 60 * 8 * 32
    end = records(run_dir, "end")[0]
    assert last["val_loss"] < first["val_loss"] - 2.0 and last["val_loss"] < end["unigram_val_xent"] - 0.3
    assert np.mean([r["train_loss"] for r in steps[-10:]]) < np.mean([r["train_loss"] for r in steps[1:11]]) - 1.5
    for key in ("step", "tokens", "train_loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed_s"):
        assert key in last
    assert last["mfu"] is None and last["tokens_per_s"] > 0            # CPU: no peak, no MFU
    config = json.loads((run_dir / "config.json").read_text())
    meta = json.loads((tiny_data / "meta.json").read_text())
    assert config["dataset"]["tokenizer_sha256"] == meta["tokenizer"]["sha256"]
    assert config["dataset"]["dir"] == str(tiny_data) and config["model"]["vocab_size"] == 259
    assert config["env"]["torch"] == torch.__version__ and config["env"]["world_size"] == 1
    assert config["env"]["git_dirty"] in ((None,) if config["env"]["git_commit"] is None else (True, False))
    assert config["derived"]["total_steps"] == 60 and config["train"]["lr"] == 3e-3
    assert records(run_dir, "start")[0]["train"] == config["train"]
    # the checkpoint gives the trained model back
    model, info = load_checkpoint(run_dir)
    assert info["step"] == 60 and info["val_loss"] == last["val_loss"] and info["data_dir"] == str(tiny_data)
    assert isinstance(model, GPT) and not model.training and model.config.vocab_size == 259


def test_resumed_run_equals_uninterrupted_run(tiny_data, tmp_path):
    run(tiny_data, tmp_path, max_tokens=24 * 256, run_name="whole")
    part = run(tiny_data, tmp_path, max_tokens=24 * 256, run_name="split", stop_at_step=13)
    assert part["step"] == 13 and not records(Path(part["run_dir"]), "end")
    run(tiny_data, tmp_path, max_tokens=24 * 256, run_name="split", resume=True)
    whole, split = records(tmp_path / "whole"), records(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(25))               # each step logged once
    for a, b in zip(whole, split):
        assert (a["train_loss"], a["lr"], a["grad_norm"]) == (b["train_loss"], b["lr"], b["grad_norm"]), a["step"]
        if a["val_loss"] is not None and b["val_loss"] is not None:                 # split also evaluated at 13
            assert a["val_loss"] == b["val_loss"], a["step"]
    assert whole[-1]["val_loss"] == split[-1]["val_loss"] and records(tmp_path / "split", "resume")[0]["step"] == 13
    sd_whole, sd_split = (torch.load(tmp_path / n / "ckpt.pt", weights_only=True) for n in ("whole", "split"))
    for k, v in sd_whole["model"].items():
        assert torch.equal(v, sd_split["model"][k]), k
    assert sd_split["step"] == sd_whole["step"] == 24 and sd_split["data_position"] == 24 * 8
    # a finished run resumed again ends once; a line torn by a kill is dropped, not a crash
    with open(tmp_path / "split" / "log.jsonl", "ab") as f:         # and bytes that are not UTF-8, or not an object
        f.write(b'\xff\xfe\n5\n{"event": "step", "step": 25, "tok')
    (tmp_path / "split" / "ckpt.pt.tmp4242").write_bytes(b"\0" * 100)   # a save killed before its rename
    run(tiny_data, tmp_path, max_tokens=24 * 256, run_name="split", resume=True)
    assert not list((tmp_path / "split").glob("*.tmp*"))
    assert len(records(tmp_path / "split", "end")) == 1 and [r["step"] for r in records(tmp_path / "split")] == \
        list(range(25))


def test_one_writer_per_run_and_stop_at_step_must_lie_ahead(tiny_data, tmp_path):
    import fcntl
    run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", stop_at_step=5)
    with open(tmp_path / "r" / "train.lock", "w") as other:               # another process training this run
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SystemExit, match="being trained by another process right now"):
            run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)
    for stop in (3, 5, 13):                 # at or before the checkpoint's step 5, or past the run's 12: never stops
        with pytest.raises(SystemExit, match=f"--stop_at_step {stop}: must come after step 5 .* by its last step, 12"):
            run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True, stop_at_step=stop)
    assert run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True, stop_at_step=8)["step"] == 8
    assert run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)["step"] == 12   # lock released


def test_mismatched_checkpoints_and_runs_are_refused(tiny_data, tmp_path):
    run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", stop_at_step=5)
    with pytest.raises(SystemExit, match="already holds a run"):
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r")
    with pytest.raises(SystemExit, match="model settings differ"):
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", model="h64-L2", resume=True)
    with pytest.raises(SystemExit, match=r"training settings differ.*'lr'"):
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", lr=1e-3, resume=True)
    other = tmp_path / "other_tokenizer"         # the same token count, two byte ids swapped
    shutil.copytree(tiny_data, other)
    ranks = (other / "tokenizer.tiktoken").read_bytes().splitlines()
    ranks[97], ranks[98] = ranks[98].split()[0] + b" 97", ranks[97].split()[0] + b" 98"
    (other / "tokenizer.tiktoken").write_bytes(b"\n".join(ranks) + b"\n")
    meta = json.loads((other / "meta.json").read_text())
    meta["tokenizer"]["sha256"] = hashlib.sha256((other / "tokenizer.tiktoken").read_bytes()).hexdigest()
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SystemExit, match="tokenizers differ"):
        run(other, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)
    shorter = tmp_path / "shorter"              # same tokenizer, fewer blocks: another block order from the same seed
    shutil.copytree(tiny_data, shorter)
    meta = json.loads((shorter / "meta.json").read_text())
    half = meta["train_tokens"] // 2
    (shorter / "train.bin").write_bytes((tiny_data / "train.bin").read_bytes()[:2 * half])
    (shorter / "meta.json").write_text(json.dumps(dict(meta, train_tokens=half)))
    with pytest.raises(SystemExit, match=r"train.bin sizes differ \(checkpoint vs now: \{'n_train_blocks': \(981, "
                                         f"{(half - 1) // 32}"):
        run(shorter, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)
    with pytest.raises(SystemExit, match=r"precisions differ.*float32.*bfloat16"):
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", dtype="bfloat16", resume=True)
    with pytest.raises(SystemExit, match="nothing to resume"):
        run(tiny_data, tmp_path, run_name="never", resume=True)
    with pytest.raises(SystemExit, match=r"training settings differ.*'eval_blocks'"):   # val losses comparable
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", eval_blocks=8, resume=True)
    # every setting that shapes the trajectory is checked, each named in the refusal
    for flag, value in [("max_tokens", 16 * 256), ("warmup_steps", 3), ("final_lr_frac", 0.1), ("beta1", 0.8),
                        ("beta2", 0.99), ("eps", 1e-8), ("weight_decay", 0.0), ("grad_clip", 0.5), ("seed", 1),
                        ("epochs", 2.0), ("batch_size", 4), ("rope_base", 500.0)]:
        with pytest.raises(SystemExit, match=f"training settings differ.*'{flag}'"):
            run(tiny_data, tmp_path, run_name="r", resume=True, **{"max_tokens": 12 * 256, flag: value})
    good = (tmp_path / "r" / "ckpt.pt").read_bytes()
    with pytest.raises(SystemExit, match="--model: model name 'h64'"):       # refused before --overwrite deletes
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", model="h64", overwrite=True)
    bad_ids = tmp_path / "bad_ids"                 # a vocab_size its tokenizer does not have: before deleting
    shutil.copytree(tiny_data, bad_ids)
    meta = json.loads((bad_ids / "meta.json").read_text())
    (bad_ids / "meta.json").write_text(json.dumps(dict(meta, vocab_size=200)))
    with pytest.raises(SystemExit, match="make 259 tokens .* meta.json says 200"):
        run(bad_ids, tmp_path, max_tokens=12 * 256, run_name="r", overwrite=True)
    (bad_ids / "meta.json").write_text(json.dumps(meta))              # ids past vocab_size: checked when counted
    np.minimum(np.fromfile(tiny_data / "train.bin", np.uint16) + 10, 265).astype(np.uint16).tofile(
        bad_ids / "train.bin")
    with pytest.raises(SystemExit, match="token id 265 >= vocab_size 259"):
        run(bad_ids, tmp_path, max_tokens=12 * 256, run_name="r", overwrite=True)
    (bad_ids / "tokenizer.tiktoken").unlink()   # evaluate.py would need it: refused before training, not after
    with pytest.raises(SystemExit, match="tokenizer.tiktoken is missing or does not match"):
        run(bad_ids, tmp_path, max_tokens=12 * 256, run_name="r", overwrite=True)
    assert (tmp_path / "r" / "ckpt.pt").read_bytes() == good
    (tmp_path / "r" / "ckpt.pt").write_bytes(good[:1000])
    with pytest.raises(SystemExit, match="--resume: .*corrupt .*: restore it from a copy, or start afresh"):
        run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)
    ckpt = torch.load(io.BytesIO(good), weights_only=True)
    for stripped in ({k: v for k, v in ckpt.items() if k != "optimizer"}, {**ckpt, "rng": {}},
                     {**ckpt, "optimizer": {**ckpt["optimizer"], "param_groups": []}}):   # weights only, or edited
        torch.save(stripped, tmp_path / "r" / "ckpt.pt")
        with pytest.raises(SystemExit, match="ckpt.pt lacks the state to go on training .*: evaluate.py can still "
                                             "score its weights"):
            run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)
    (tmp_path / "r" / "ckpt.pt").write_bytes(good)
    # --overwrite starts afresh
    assert run(tiny_data, tmp_path, max_tokens=4 * 256, run_name="r", overwrite=True)["step"] == 4
    # load_checkpoint: missing and corrupt files
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "never")
    (tmp_path / "bad.pt").write_bytes((tmp_path / "r" / "ckpt.pt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    # running out of memory while loading is not the file's fault: the message must not call it corrupt
    with patch.object(torch, "load", side_effect=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")):
        with pytest.raises(MemoryError, match=r"^.*ckpt.pt: not enough memory on cpu to load it \(CUDA out of memory\)"
                                              ": free some$"):
            load_checkpoint(tmp_path / "r")
        with pytest.raises(SystemExit, match="^--resume: .*ckpt.pt: not enough memory on cpu to load it"):
            run(tiny_data, tmp_path, max_tokens=12 * 256, run_name="r", resume=True)


def test_bad_datasets_are_refused(tiny_data, tmp_path):
    with pytest.raises(SystemExit, match=r"meta.json not found: build the dataset with `python simplify.py`"):
        run(tmp_path / "missing", tmp_path)
    with pytest.raises(SystemExit, match="less than one batch of 4096: more data or a smaller --batch_size"):
        run(tiny_data, tmp_path, batch_size=4096)
    short_val = tmp_path / "short_val"
    shutil.copytree(tiny_data, short_val)
    meta = json.loads((short_val / "meta.json").read_text())
    for n in (0, 32):                              # empty (cannot be memory-mapped), or one block short of a token
        np.zeros(n, meta["dtype"]).tofile(short_val / "val.bin")
        (short_val / "meta.json").write_text(json.dumps(dict(meta, val_tokens=n)))
        with pytest.raises(SystemExit, match=f"val.bin holds {n} tokens, less than one block of 32 \\+ 1"):
            run(short_val, tmp_path)
    for key, value, said in (("dtype", None, "lacks dtype"), ("train_tokens", "123", "train_tokens must be whole"),
                             ("vocab_size", 259.0, "vocab_size must be whole")):
        (short_val / "meta.json").write_text(json.dumps({k: v for k, v in dict(meta, **{key: value}).items()
                                                         if v is not None}))
        with pytest.raises(SystemExit, match=f"incomplete or corrupt \\(meta.json('s)? {said}"):
            run(short_val, tmp_path)
    np.zeros(0, meta["dtype"]).tofile(short_val / "train.bin")      # with a token budget, steps would not say it
    (short_val / "meta.json").write_text(json.dumps(dict(meta, train_tokens=0, val_tokens=32)))
    with pytest.raises(SystemExit, match="train.bin holds 0 tokens, less than one block of 32 \\+ 1: a smaller "
                                         "--block_size, or rebuild the dataset with more data"):
        run(short_val, tmp_path, max_tokens=1000)
    with pytest.raises(SystemExit, match="must divide"):
        run(tiny_data, tmp_path, micro_batch_size=3)
    with pytest.raises(SystemExit, match="less than one step of 8 x 32 = 256 tokens"):
        run(tiny_data, tmp_path, max_tokens=100)
    for flag, value in [("micro_batch_size", -2), ("grad_clip", -1.0), ("warmup_steps", -3), ("lr", 0.0),
                        ("final_lr_frac", -1.0), ("beta2", 1.5), ("eps", -1e-8), ("rope_base", 0.0),
                        ("epochs", 0.0), ("epochs", math.inf), ("threads", -2), ("stop_at_step", -1),
                        ("max_tokens", -5), ("eps", math.inf), ("weight_decay", math.nan), ("grad_clip", math.nan),
                        ("lr", math.inf), ("peak_flops", -1.0), ("threads", 100_000), ("seed", -1), ("eps", 0.0)]:
                        # (-5 tokens trained a whole epoch, inf epochs was a traceback, inf eps learned nothing,
                        # 100,000 threads crashed the process, seed -1 a traceback at the first step, eps 0 made
                        # 0/0 = NaN of a weight with no gradient yet: beta2 0 and a zero gradient, say)
        with pytest.raises(SystemExit, match=f"--{flag} must be"):               # would train, wrongly
            run(tiny_data, tmp_path, **{flag: value})
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit, match="cannot make the folder .*a_file/r .*: pass a writable --out_dir"):
        run(tiny_data, tmp_path / "a_file", run_name="r")
    with pytest.raises(SystemExit, match="--device 'foo': use auto, cpu, cuda, cuda:N or mps"):
        run(tiny_data, tmp_path, device="foo")
    with pytest.raises(SystemExit, match="--rope_base must be > 1"):   # 1e-300: NaN at step 0, blamed on the model
        run(tiny_data, tmp_path, rope_base=1e-300)
    for name in ("..", "../r", "a/b", "/r"):   # ".." put the run's files into out/ itself
        with pytest.raises(SystemExit, match=f"--run_name '{re.escape(name)}': a plain folder name, no / or .."):
            run(tiny_data, tmp_path, run_name=name)
    with pytest.raises(SystemExit, match="--resume continues the run, --overwrite deletes it: pass one of them"):
        run(tiny_data, tmp_path, resume=True, overwrite=True)   # (resumed, --overwrite ignored without a word)
    with pytest.raises(SystemExit, match="--dtype 'float64': use one of auto, bfloat16, float16, float32"):
        run(tiny_data, tmp_path, dtype="float64")
    with pytest.raises(SystemExit):   # no abbreviations: --batch is not --batch_size (scaling.py checks flag names)
        train.parse_args(["--batch", "8"])
    with pytest.raises(SystemExit, match="needs --compile"):
        run(tiny_data, tmp_path, compile_mode="reduce-overhead")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    original, calls = GPT.head_and_loss, [0]

    def poisoned(self, x, targets):
        logits, loss = original(self, x, targets)
        calls[0] += self.training
        return logits, (loss * float("nan") if self.training and calls[0] > 14 else loss)

    monkeypatch.setattr(GPT, "head_and_loss", poisoned)
    with pytest.raises(SystemExit, match="step 15: train loss nan.*last good checkpoint.*Train again with a lower "
                                         "--lr .*--overwrite, or another --run_name"):   # (--resume refuses a new lr)
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="nan")
    ckpt = torch.load(tmp_path / "nan" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 10 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    stopped = records(tmp_path / "nan", "stopped")[0]
    assert stopped["step"] == 15 and stopped["train_loss"] == "nan"      # strict JSON: no bare NaN


def test_non_finite_val_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    """Only the evaluation goes wrong (2 forward passes of 8 blocks per evaluation; the third, at step 20, is NaN):
    the train loss is finite, the run still stops."""
    original, calls = GPT.head_and_loss, [0]

    def poisoned(self, x, targets):
        logits, loss = original(self, x, targets)
        calls[0] += not self.training
        return logits, (loss * float("nan") if not self.training and calls[0] > 4 else loss)

    monkeypatch.setattr(GPT, "head_and_loss", poisoned)
    with pytest.raises(SystemExit, match=r"step 20: train loss [\d.]+, val loss nan.*last good checkpoint"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="nan")
    ckpt = torch.load(tmp_path / "nan" / "ckpt.pt", weights_only=True)
    assert ckpt["step"] == 10 and math.isfinite(ckpt["val_loss"])
    stopped = records(tmp_path / "nan", "stopped")[0]
    assert stopped["step"] == 20 and stopped["val_loss"] == "nan" and math.isfinite(stopped["train_loss"])


def test_a_full_disk_keeps_the_last_checkpoint_and_says_how_to_go_on(tiny_data, tmp_path, monkeypatch):
    run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", stop_at_step=10)
    good = (tmp_path / "r" / "ckpt.pt").read_bytes()

    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 497344 vs 497232")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SystemExit, match="step 20: cannot write the checkpoint .*unexpected pos.*disk full.*ckpt.pt "
                                         "still holds the last one: free space, then .* --resume"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)
    assert (tmp_path / "r" / "ckpt.pt").read_bytes() == good and not list((tmp_path / "r").glob("*.tmp*"))
    monkeypatch.undo()
    # the resume's config.json and log.jsonl, then the log's lines while training; a folder it cannot write in
    kept = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name != "train.lock"}

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train, "write_atomic", no_space)
    with pytest.raises(SystemExit, match=r"^.*r: cannot write config.json or log.jsonl \(No space left on device\): "
                                         "free space or make it writable, then run the same command again$"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)
    with pytest.raises(SystemExit,
                       match="new: cannot write config.json .* then run the same command with --overwrite$"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="new")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.name != "train.lock"} == kept
    monkeypatch.setattr(train, "open", lambda *a, **k: no_space(), raising=False)   # the log's appends
    with pytest.raises(SystemExit, match=r"^step 11: cannot write to .*log.jsonl \(No space left on device\): free "
                                         "space, then run the same command with --resume$"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)
    monkeypatch.undo()
    assert (tmp_path / "r" / "ckpt.pt").read_bytes() == good
    monkeypatch.setattr(train, "try_lock", lambda path: (_ for _ in ()).throw(OSError(30, "Read-only file system")))
    with pytest.raises(SystemExit, match=r"r: cannot write in it \(Read-only file system\): make it writable"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)
    monkeypatch.undo()
    assert run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)["step"] == 30


def test_ctrl_c_says_what_is_kept_and_how_to_go_on(tiny_data, tmp_path, monkeypatch):
    original, calls = GPT.head_and_loss, [0]

    def interrupted(self, x, targets):
        calls[0] += self.training
        if calls[0] > limit:
            raise KeyboardInterrupt
        return original(self, x, targets)

    monkeypatch.setattr(GPT, "head_and_loss", interrupted)
    limit = 3                                       # before the first checkpoint (step 10)
    with pytest.raises(SystemExit, match="interrupted before .* had a checkpoint: run again with --overwrite"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r")
    with pytest.raises(SystemExit, match="stopped before its first checkpoint.*pass --overwrite"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r")
    calls[0], limit = 0, 14
    with pytest.raises(SystemExit, match="interrupted: .*ckpt.pt holds the last checkpoint.*--resume"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", overwrite=True)
    monkeypatch.setattr(GPT, "head_and_loss", original)
    assert run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="r", resume=True)["step"] == 30


def test_kill_says_what_is_kept_as_ctrl_c_does(tiny_data, tmp_path):
    """SIGTERM (`kill`, a scheduler's stop) ends train.py with the same one line as Ctrl-C, not silently."""
    import time
    args = [f"--{k}={v}" for k, v in {**TINY, "max_tokens": 10 ** 7, "eval_interval": 2}.items()]
    proc = subprocess.Popen([sys.executable, "train.py", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}",
                             "--run_name=k", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 60
    while not (tmp_path / "k" / "ckpt.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.terminate()
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 1 and err.strip().splitlines()[-1].startswith("interrupted: ") and "--resume" in err, err


def test_non_finite_loss_of_the_initial_weights_stops_before_any_step(tiny_data, tmp_path, monkeypatch):
    """The evaluation at step 0 is NaN (broken initial weights, say): the run stops there, says so, writes no
    checkpoint, and a resume is refused rather than continuing a run that never started."""
    original = GPT.head_and_loss

    def poisoned(self, x, targets):
        logits, loss = original(self, x, targets)
        return logits, (loss if self.training else loss * float("nan"))

    monkeypatch.setattr(GPT, "head_and_loss", poisoned)
    with pytest.raises(SystemExit, match=r"step 0: train loss None, val loss nan: not finite.*no checkpoint yet.*"
                                         "initial weights"):
        run(tiny_data, tmp_path, max_tokens=30 * 256, run_name="nan")
    assert not (tmp_path / "nan" / "ckpt.pt").exists()
    stopped = records(tmp_path / "nan", "stopped")[0]
    assert stopped["step"] == 0 and stopped["val_loss"] == "nan" and not records(tmp_path / "nan", "step")


@pytest.mark.parametrize("loss", ["plain", "plain --compile", pytest.param("fused", marks=pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None,
    reason="the fused loss on CPU needs Triton's interpreter"))])
def test_two_process_ddp_equals_one_process(tiny_data, tmp_path, loss):
    """torchrun, 2 CPU processes (gloo), 2 micro-batches of 2 per process per step vs. 1 process, 1 x 8, plain loss.
    With the fused loss in the DDP run, its head gradient must reach DDP's all-reduce like any other; compiled, the
    same numbers through DDP's no_sync on the compiled model (its parameters are one gradient bucket: no graph split)."""
    loss, *compiled = loss.split()
    args = [f"--{k}={v}" for k, v in {**TINY, "max_tokens": 6 * 256, "eval_interval": 3, "loss": loss}.items()]
    args += compiled
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "train.py", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}", "--run_name=ddp",
                           "--micro_batch_size=2", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="single")
    ddp_config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert ddp_config["env"]["world_size"] == 2 and ddp_config["derived"]["loss"] == loss
    assert ddp_config["train"]["compile"] == bool(compiled)
    assert_runs_agree(tmp_path, "single", "ddp", 6, rel=1e-4 if compiled else 1e-5)   # (inductor's own rounding)


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None,
                    reason="attention.py on CPU needs Triton's interpreter")
def test_triton_attention_trains_as_sdpa_does(tiny_data, tmp_path, capsys):
    """--attention triton: the same run to float32 rounding, recorded in config.json and the log; resumable without
    it (a speed setting, not part of what the model is)."""
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="sdpa")
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="triton", attention="triton",
        stop_at_step=3)
    assert json.loads((tmp_path / "triton" / "config.json").read_text())["train"]["attention"] == "triton"
    assert "Triton attention" in capsys.readouterr().out
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="triton", resume=True)
    assert_runs_agree(tmp_path, "sdpa", "triton", 6)
    assert json.loads((tmp_path / "triton" / "config.json").read_text())["train"]["attention"] == "sdpa"   # resumed
    with pytest.raises(SystemExit, match="--attention 'flash': use one of sdpa, triton"):
        run(tiny_data, tmp_path, run_name="bad", attention="flash")
    with pytest.raises(SystemExit, match="--attention triton: attention.py takes up to 128 tokens .* got 256 and 4"):
        run(tiny_data, tmp_path, run_name="bad", attention="triton", block_size=256)
    assert not (tmp_path / "bad").exists()                  # refused before anything was written


def test_gradient_accumulation_equals_one_batch_and_evals_spread_over_val(tiny_data, tmp_path, monkeypatch):
    """4 micro-batches of 2 per step train the model 1 batch of 8 does (each micro-batch's loss divided by 4); the
    --eval_blocks are spread evenly over val.bin (110 blocks of 32 here), not its first 16."""
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="whole")
    evaluated, val_loss = [], train.val_loss
    monkeypatch.setattr(train, "val_loss", lambda model, data, ids, *a: evaluated.append(ids.tolist()) or
                        val_loss(model, data, ids, *a))
    run(tiny_data, tmp_path, max_tokens=6 * 256, eval_interval=3, run_name="accum", micro_batch_size=2)
    assert evaluated[0] == [0, 7, 15, 22, 29, 36, 44, 51, 58, 65, 73, 80, 87, 94, 102, 109]
    assert_runs_agree(tmp_path, "whole", "accum", 6)


def test_chunked_loss_run_equals_plain_run(tiny_data, tmp_path):
    """--loss chunked --loss_chunk 100 (8 x 32 = 256 rows per step is not a multiple) trains the same model, to
    rounding; --loss auto is plain on CPU."""
    run(tiny_data, tmp_path, max_tokens=8 * 256, eval_interval=4, run_name="plain")
    run(tiny_data, tmp_path, max_tokens=8 * 256, eval_interval=4, run_name="chunked", loss="chunked", loss_chunk=100)
    assert_runs_agree(tmp_path, "plain", "chunked", 8, rel=1e-4)
    plain = records(tmp_path / "plain")
    assert plain[-1]["train_loss"] < plain[1]["train_loss"] - 0.5           # it trained, not a flat comparison
    configs = [json.loads((tmp_path / n / "config.json").read_text()) for n in ("plain", "chunked")]
    assert configs[1]["train"]["loss_chunk"] == 100
    assert [c["derived"]["loss"] for c in configs] == ["plain", "chunked"]
    with pytest.raises(SystemExit, match="--loss_chunk must be >= 1"):
        run(tiny_data, tmp_path, run_name="bad", loss="chunked", loss_chunk=0)
    with pytest.raises(SystemExit, match="--loss 'fast': use one of auto, plain, chunked, fused"):
        run(tiny_data, tmp_path, run_name="bad", loss="fast")
    with pytest.raises(SystemExit, match="--compile_mode 'cudagraphs': use one of default, reduce-overhead"):
        run(tiny_data, tmp_path, run_name="bad", compile=True, compile_mode="cudagraphs")
    with pytest.raises(SystemExit, match="--step_graph captures the whole step in a CUDA graph itself: use "
                       "--compile_mode default or max-autotune-no-cudagraphs, not reduce-overhead"):
        run(tiny_data, tmp_path, run_name="bad", compile=True, compile_mode="reduce-overhead", step_graph=True)
    with pytest.raises(SystemExit, match="--step_graph is checked in bfloat16 and float32, not with float16's"):
        run(tiny_data, tmp_path, run_name="bad", dtype="float16", step_graph=True)   # (before any device check)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--step_graph needs a CUDA GPU, got cpu"):
            run(tiny_data, tmp_path, run_name="bad", step_graph=True)
    assert not (tmp_path / "bad").exists()   # every refusal before anything was written
    for device, missing, there in (("cuda", "CUDA GPU", torch.cuda.is_available()),
                                   ("mps", "Apple GPU", torch.backends.mps.is_available())):
        if not there:   # a one-line error, not torch's traceback
            with pytest.raises(SystemExit, match=f"--device {device}: this torch .* sees no {missing}; use --device"):
                run(tiny_data, tmp_path, run_name="bad", device=device)


def test_gradients_are_kept_across_micro_batches_only_under_cuda_graphs():
    model = torch.nn.Linear(3, 2)
    for mode, accum, kept in (("reduce-overhead", 2, True), ("max-autotune", 4, True), ("reduce-overhead", 1, False),
                              ("default", 2, False), ("max-autotune-no-cudagraphs", 2, False), (None, 2, False)):
        model.zero_grad(set_to_none=True)
        assert keep_grads(model, mode, accum) == kept, (mode, accum)
        assert all((p.grad is not None and not p.grad.any()) if kept else p.grad is None for p in model.parameters())


def test_a_graphed_step_runs_its_warm_up_then_replays_one_capture_on_each_batch(monkeypatch):
    """step.graphed's logic on the CPU, CUDA's streams and graphs played by stand-ins that do what CUDA's do (a capture
    records the step without running it; a replay runs what was recorded, on the tensors it was recorded with): the
    first GRAPH_WARMUP calls run the step as it is, the next one captures it, once, and every call from then on gives
    the step's outputs for its own batch, in the same two tensors. A failed capture names the operation that failed,
    not CUDA's "previous error during capture". (tests/test_gpu.py runs it on a GPU, against the eager step.)"""
    from contextlib import contextmanager, nullcontext
    from step import GRAPH_WARMUP, graphed
    recorded, eager, said = {"capturing": False}, [], []
    work = lambda batch: (batch.float().sum(), batch.float().std())   # noqa: E731  (b, T+1) -> the step's outputs

    class Graph:
        replays = 0

        def replay(self):
            Graph.replays += 1
            for out, new in zip(recorded["out"], work(recorded["batch"])):
                out.copy_(new)

    @contextmanager
    def capture(graph, stream):
        recorded["capturing"] = True
        try:
            yield
        except RuntimeError:   # CUDA ends a broken capture with an error of its own
            raise RuntimeError("operation failed due to a previous error during capture")
        finally:
            recorded["capturing"] = False

    def step(batch):
        if not recorded["capturing"]:
            eager.append(batch)
            return work(batch)
        if recorded.get("fail"):
            raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")
        recorded["batch"], recorded["out"] = batch, (torch.empty(()), torch.empty(()))   # recorded, not run
        return recorded["out"]

    stream = type("Stream", (), {"__init__": lambda self, device=None: None, "wait_stream": lambda self, other: None})
    for name, stand_in in (("Stream", stream), ("current_stream", stream), ("stream", lambda s: nullcontext()),
                           ("graph", capture), ("CUDAGraph", Graph)):
        monkeypatch.setattr(torch.cuda, name, stand_in)
    batches = [torch.randint(0, 100, (4, 9), generator=torch.Generator().manual_seed(i)) for i in range(7)]
    graph_step = graphed(step, "cuda", said.append)
    outs = [graph_step(b) for b in batches]
    assert eager == batches[:GRAPH_WARMUP] and Graph.replays == len(batches) - GRAPH_WARMUP and len(said) == 1
    assert recorded["batch"] is not batches[GRAPH_WARMUP]        # the graph's own batch tensor, copied into
    assert all(out is outs[-1] for out in outs[GRAPH_WARMUP:])   # the same two tensors every replay
    for i in range(GRAPH_WARMUP, len(batches)):                  # each replay on its call's batch
        assert [t.item() for t in graph_step(batches[i])] == [t.item() for t in work(batches[i])], i
    recorded["fail"], graph_step = True, graphed(step, "cuda", said.append)
    for b in batches[:GRAPH_WARMUP]:
        graph_step(b)
    with pytest.raises(RuntimeError, match=r"^--step_graph: this step cannot be captured in a CUDA graph \(operation "
                       r"not permitted when stream is capturing\): train without --step_graph$"):
        graph_step(batches[GRAPH_WARMUP])


def test_every_form_of_the_optimizer_resumes_every_other():
    """train.py's AdamW comes in three forms: plain (CPU), fused (a GPU) and --step_graph's (fused, capturable, its LR
    a tensor that set_lr fills). Each takes the steps the plain one does, and a checkpoint of any resumes in any other
    (load_optimizer_state keeps the loading run's kernel, capturable flag and LR form): 4 steps, a save and load, 4
    more end where 8 uninterrupted steps do, in every order. On the CPU: fused AdamW runs here, only the CUDA graph
    needs a GPU (tests/test_gpu.py); the forms are built by hand, as step.adamw makes the fused ones only on a GPU."""
    forms = {"plain": {}, "fused": {"fused": True}, "graph": {"fused": True, "capturable": True}}

    def optimizer(params, form):
        return torch.optim.AdamW(params, lr=torch.tensor(0.0) if form == "graph" else 0.0, betas=(0.9, 0.95),
                                 eps=1e-4, weight_decay=0.1, **forms[form])

    def steps(model, opt, start, n):
        for step in range(start, start + n):
            set_lr(opt, lr_at(step, 8, 1e-2, 2))
            torch.manual_seed(step)
            model(torch.randn(5, 3)).square().mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def trained(first, second):   # the forms before and after the save (None: no save)
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = optimizer(model.parameters(), first)
        steps(model, opt, 0, 4)
        if second is not None:   # through a file's bytes, as a checkpoint
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            opt = optimizer(model.parameters(), second)
            load_optimizer_state(opt, torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
            group = opt.param_groups[0]
            assert (torch.is_tensor(group["lr"]), bool(group["fused"]), group["capturable"]) == (
                second == "graph", second != "plain", second == "graph")
        steps(model, opt, 4, 4)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in torch.nn.Linear(3, 2).parameters()])
    reference = trained("plain", None)
    assert (reference - start).abs().min() > 1e-3                       # every weight moved
    assert torch.equal(trained("plain", "plain"), reference)
    for first in forms:
        for second in (None, *forms):
            assert torch.allclose(trained(first, second), reference, rtol=1e-5, atol=1e-7), (first, second)


def test_every_compiled_run_of_a_process_is_compiled(tiny_data, tmp_path, monkeypatch):
    """Each train() compiles the model afresh: dynamo's graphs of GPT.forward are guarded by the torch.compile call
    that made them (inductor's backend is a new object per call, as the lambda here), and past 8 of them
    (recompile_limit) a function runs eagerly, silently. The training and evaluation graphs: 2 per run."""
    from torch._dynamo.utils import counters
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: compile_(m, backend=lambda gm, _: gm.forward))
    graphs = []
    for i in range(5):
        before = counters["stats"]["unique_graphs"]
        run(tiny_data, tmp_path, run_name=f"c{i}", compile=True, max_tokens=4 * 256, eval_interval=4, batch_size=4)
        graphs.append(counters["stats"]["unique_graphs"] - before)
    assert graphs == [2] * 5
