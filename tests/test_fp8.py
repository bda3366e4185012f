"""fp8.py: float8 matmuls checked against the same arithmetic written out by hand (dequantised operands in float32),
and train.py --fp8 end to end. CPUs run torch._scaled_mm too, so all of it runs here; on a GPU it runs on the GPU."""
import json

import pytest
import torch
import torch.nn as nn

import fp8
from fp8 import E4M3_MAX, FP8Linear, FP8Matmul, to_fp8_rows, use_fp8
from model import GPT, GPTConfig, config_from_name
from test_train import records, run

DEVICE = "cuda" if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0) else "cpu"


def assert_exact(got, want):
    """got is want's float8 arithmetic: to float32 rounding on a CPU; on a GPU to bf16's (its kernels write bf16), and
    to the tensor cores' narrower accumulator (use_fast_accum), whose error follows the partial sums' size: an entry
    near 0 of a large sum is off by about 1e-3 of the tensor's largest (some weight-gradient entries, sums of 208)."""
    if DEVICE == "cpu":
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3 * max(1.0, want.abs().max().item()))


def dequantised(t):
    q, scale = to_fp8_rows(t)
    return q.float() * scale


def rel_err(got, want):
    return ((got.double() - want.double()).norm() / want.double().norm()).item()


def test_rows_are_scaled_by_powers_of_two_into_the_float8_range():
    t = torch.tensor([[1.0, -3.0, 0.5, 2.0], [1000.0, 0.0, -1e-3, 7.0], [0.0, 0.0, 0.0, 0.0]])
    q, scale = to_fp8_rows(t)
    assert q.dtype == torch.float8_e4m3fn and q.shape == t.shape and scale.shape == (3, 1)
    assert torch.equal(scale, torch.exp2(torch.log2(scale).round()))          # powers of two
    assert scale[0, 0] == 2.0 ** -7 and scale[1, 0] == 4.0                     # 3 -> 384, 1000 -> 250
    assert torch.equal(q[0].float(), torch.tensor([128.0, -384.0, 64.0, 256.0]))   # exact: these are float8 values
    assert q[1, 0].float() == 256.0                                            # 250 rounded to 3 mantissa bits
    assert q[1, 2].float() == 0.0                                              # 1e-3 / 4: below float8's range
    assert torch.equal(q[2].float(), torch.zeros(4))                           # an all-zero row stays zero
    big = torch.randn(64, 100) * torch.logspace(-3, 3, 64)[:, None]
    q, scale = to_fp8_rows(big)
    row_max = q.float().abs().amax(dim=1)
    assert (row_max <= E4M3_MAX).all() and (row_max >= E4M3_MAX / 2).all()   # each row in [224, 448]
    assert rel_err(q.float() * scale, big) < 0.04                              # 3 mantissa bits


@pytest.mark.parametrize("tokens, weight_grad", [(208, False), (208, True), (200, True)])
def test_matmul_and_its_gradients_are_the_float8_arithmetic_written_out(tokens, weight_grad):
    """forward and input gradient: float8 operands (scales per row) multiplied exactly; weight gradient: the plain
    matmul in the input's dtype, or with weight_grad float8 operands with scales per feature (over the tokens), when
    the tokens are a multiple of 16 (200 are not: the plain matmul). Against the float32 matmul: the few-percent
    error of 3 mantissa bits."""
    torch.manual_seed(0)
    x = torch.randn(tokens, 64, device=DEVICE, requires_grad=True)
    w = (torch.randn(96, 64, device=DEVICE) * 0.02).requires_grad_()
    grad_y = torch.randn(tokens, 96, device=DEVICE) * torch.logspace(-2, 1, tokens, device=DEVICE)[:, None]
    y = FP8Matmul.apply(x, w, weight_grad)
    y.backward(grad_y)
    want_y = dequantised(x.detach()) @ dequantised(w.detach()).t()
    want_gx = dequantised(grad_y) @ dequantised(w.detach().t().contiguous()).t()
    assert_exact(y, want_y)
    assert_exact(x.grad, want_gx)
    exact_gw = grad_y.t() @ x.detach()
    if weight_grad and tokens % 16 == 0:
        assert_exact(w.grad, dequantised(grad_y.t()) @ dequantised(x.detach().t()).t())
        assert 0.005 < rel_err(w.grad, exact_gw) < 0.06
    else:
        torch.testing.assert_close(w.grad, exact_gw, rtol=1e-5, atol=1e-5)
    assert 0.005 < rel_err(y, x.detach() @ w.detach().t()) < 0.06
    assert 0.005 < rel_err(x.grad, grad_y @ w.detach()) < 0.06


def test_fp8_linear_computes_in_float8_only_while_training():
    torch.manual_seed(0)
    lin = nn.Linear(32, 48, bias=False).to(DEVICE)
    x = torch.randn(2, 5, 32, device=DEVICE)
    want = lin(x)
    lin.__class__ = FP8Linear
    lin.eval()
    assert torch.equal(lin(x), want)                                           # evaluation: nn.Linear's own
    lin.train()
    got = lin(x)
    assert got.shape == (2, 5, 48) and 0 < rel_err(got, want) < 0.06
    want_fp8 = dequantised(x.view(10, 32)) @ dequantised(lin.weight.detach()).t()
    assert_exact(got, want_fp8.view(2, 5, 48))
    x.requires_grad_()
    with torch.autocast(DEVICE, dtype=torch.bfloat16):                         # autocast's dtype, as nn.Linear
        got = lin(x)
    assert got.dtype == torch.bfloat16
    want_fp8 = dequantised(x.detach().view(10, 32).bfloat16()) @ dequantised(lin.weight.detach()).t()
    torch.testing.assert_close(got.float(), want_fp8.view(2, 5, 48), rtol=1e-2, atol=1e-3)   # bf16 output
    got.sum().backward()
    assert x.grad.dtype == lin.weight.grad.dtype == torch.float32               # the float32 leaves' gradients
    assert 0 < rel_err(x.grad, torch.ones(2, 5, 48, device=DEVICE) @ lin.weight.detach()) < 0.06


def test_a_nan_stays_in_its_row():
    """A non-finite value makes its own row's output NaN (train.py then stops the run), and no other row's."""
    x, w = torch.randn(4, 32, device=DEVICE), torch.randn(16, 32, device=DEVICE)
    x[2, 5] = float("nan")
    y = FP8Matmul.apply(x, w)
    assert y[2].isnan().all() and y[[0, 1, 3]].isfinite().all()


def test_use_fp8_converts_the_blocks_linears_in_place():
    torch.manual_seed(0)
    model = GPT(config_from_name("h32-L2", vocab_size=300))
    params, keys = list(model.parameters()), list(model.state_dict())
    names = use_fp8(model)
    assert names == [f"blocks.{i}.{m}" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.gate", "mlp.up",
                                                                     "mlp.down")]
    assert type(model.lm_head) is nn.Linear and all(isinstance(model.get_submodule(n), FP8Linear) for n in names)
    assert all(a is b for a, b in zip(params, model.parameters())) and list(model.state_dict()) == keys
    assert model.num_params() == 2 * (16 * 32 ** 2 + 2 * 32) + 2 * 300 * 32 + 32 == 52_128   # h32-L2, V = 300
    odd = GPT(GPTConfig(n_embd=40, n_head=4, n_layer=1, vocab_size=100))      # (8 heads make n_embd a multiple of 16)
    with pytest.raises(ValueError, match="blocks.0.attn.qkv is 40 -> 120: float8 matmuls need sizes that are "
                                         "multiples of 16"):
        use_fp8(odd)
    assert not any(isinstance(m, FP8Linear) for m in odd.modules())           # all or nothing


def test_a_float8_model_trains_like_the_float32_one_and_compiles_whole():
    """The same steps from the same weights: the loss goes down alike (float8's rounding is noise, not bias). Compiled
    by inductor in one graph (fullgraph: no break around the float8 matmuls), under bf16 autocast as on a GPU, it gives
    the eager loss and gradients."""
    torch.manual_seed(0)
    base = GPT(config_from_name("h32-L2", vocab_size=64, block_size=32)).to(DEVICE)
    models = [base, GPT(base.config).to(DEVICE), GPT(base.config).to(DEVICE)]
    for m, weight_grad in zip(models[1:], (False, True)):
        m.load_state_dict(base.state_dict())
        use_fp8(m, weight_grad=weight_grad)
    data = torch.randint(0, 64, (16, 33), device=DEVICE)
    data[:, 1::2] = (data[:, 0::2][:, :16] * 3 + 1) % 64                      # something to learn
    losses = []
    for model in models:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        curve = []
        for _ in range(20):
            _, loss = model(data[:, :-1], data[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad()
            curve.append(loss.item())
        losses.append(curve)
    assert losses[0][-1] < losses[0][0] - 0.5                                  # it learns
    for curve in losses[1:]:                                                   # and so do both float8 forms
        assert curve[0] == pytest.approx(losses[0][0], rel=1e-2)
        assert curve[-1] == pytest.approx(losses[0][-1], rel=0.02)
    assert losses[2] != losses[1]                                              # the weight gradients differ
    for fp8_model in models[1:]:                                               # (weight gradients in bf16, float8)
        models[0].load_state_dict(fp8_model.state_dict())                     # the same weights, without float8
        grads = []
        for m in (models[0], fp8_model, torch.compile(fp8_model, fullgraph=True)):
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                _, loss = m(data[:, :-1], data[:, 1:])
            loss.backward()
            grads.append([loss.detach()] + [p.grad.clone() for p in m.parameters()])
            m.zero_grad()
        # inductor keeps some intermediates in float32 where eager rounds them to bf16, so a few values fall on the
        # other side of a float8 rounding: compiled is as far from the bf16 gradients as eager is (0.05-16% here)
        for bf16, eager, compiled in zip(*grads):
            assert rel_err(compiled, bf16) < 1.5 * rel_err(eager, bf16) + 1e-3


def test_train_py_fp8_runs_records_and_resumes_only_with_the_same_setting(tiny_data, tmp_path):
    common = dict(max_tokens=12 * 256, eval_interval=6, device=DEVICE)
    run(tiny_data, tmp_path, run_name="plain", **common)
    run(tiny_data, tmp_path, run_name="fp8", fp8=True, **common)
    run(tiny_data, tmp_path, run_name="split", fp8=True, stop_at_step=6, **common)
    with pytest.raises(SystemExit, match=r"training settings differ .*'fp8': \(True, False\)"):
        run(tiny_data, tmp_path, run_name="split", resume=True, **common)
    run(tiny_data, tmp_path, run_name="split", fp8=True, resume=True, **common)
    with pytest.raises(SystemExit, match=r"training settings differ .*'fp8_weight_grad': \(False, True\)"):
        run(tiny_data, tmp_path, run_name="split", fp8=True, fp8_weight_grad=True, resume=True, **common)
    with pytest.raises(SystemExit, match="--fp8_weight_grad goes with --fp8 .*: add --fp8"):
        run(tiny_data, tmp_path, run_name="bad", fp8_weight_grad=True, **common)
    run(tiny_data, tmp_path, run_name="fp8w", fp8=True, fp8_weight_grad=True, **common)
    plain, f8, split, f8w = (records(tmp_path / n) for n in ("plain", "fp8", "split", "fp8w"))
    for f in (f8, f8w):
        assert f[-1]["val_loss"] < f[0]["val_loss"] - 0.5                      # it trained
        assert f[-1]["val_loss"] == pytest.approx(plain[-1]["val_loss"], rel=0.03)
        assert f[-1]["val_loss"] != plain[-1]["val_loss"]                       # and in float8: not the same numbers
    assert f8w[-1]["val_loss"] != f8[-1]["val_loss"]                           # its weight gradients too
    # resumed = uninterrupted (on a GPU to 1e-3, as in test_gpu.py: its atomic additions vary the rounding)
    assert split[-1]["val_loss"] == pytest.approx(f8[-1]["val_loss"], rel=1e-4 if DEVICE == "cpu" else 1e-3)
    assert json.loads((tmp_path / "fp8" / "config.json").read_text())["train"]["fp8"] is True
    # a checkpoint from before the flag existed (no fp8 in its train_config) resumes without it
    ckpt_path = tmp_path / "plain" / "ckpt.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["train_config"]["fp8"]
    torch.save(ckpt, ckpt_path)
    run(tiny_data, tmp_path, run_name="plain", resume=True, **common)
    with pytest.raises(SystemExit, match=r"training settings differ .*'fp8': \(False, True\)"):
        run(tiny_data, tmp_path, run_name="plain", resume=True, fp8=True, **common)   # it trained without


def test_where_float8_cannot_run_it_says_so_in_one_line(monkeypatch):
    fp8.check_supported("cpu", "float32")
    with pytest.raises(ValueError, match="not mps: train without --fp8"):
        fp8.check_supported("mps", "float32")
    # two GPUs as these checks see them: an H100 as cuda:0, an A100 as cuda:1
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "A100" if d == "cuda:1" else "H100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0) if d == "cuda:1" else (9, 0))
    with pytest.raises(ValueError, match=r"compute capability 9.0\+\), this is A100 \(8, 0\): train without --fp8"):
        fp8.check_supported("cuda:1", "bfloat16")
    fp8.check_supported("cuda:0", "bfloat16")
    fp8.check_supported("cuda", "bfloat16")
    with pytest.raises(ValueError, match="bfloat16 autocast, not float16: --dtype bfloat16"):
        fp8.check_supported("cuda", "float16")
    monkeypatch.setattr(torch.version, "hip", "6.2")
    with pytest.raises(ValueError, match="not ROCm: train without --fp8"):
        fp8.check_supported("cuda", "bfloat16")
