"""pretrained.py and evaluate.py --hf_model: tiny GPT-NeoX (Pythia's architecture) and OPT models with random weights,
saved as the hub's files are, scored as our runs are and checked against transformers called directly."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # local directories only: nothing here may reach the hub

import pytest
import torch
from torch.nn import functional as F

import evaluate
import pretrained
from evaluate import encode_pair, evaluate_task, score_requests
from report import emergence
from results import results_problem

import transformers   # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers   # noqa: E402 (transformers' dependency)

TEXT = ["the dog sees the ball.", "a cat likes some milk.", "my mom wants the red car.", "the little boy finds a book."]


def save_tiny(path, arch, bos="<|endoftext|>"):
    """A byte-level BPE of 300 tokens (as Pythia's and OPT's are byte-level) and a 2-layer model of `arch`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(TEXT * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<s>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="<|endoftext|>")
    V = len(fast)
    torch.manual_seed(0)
    if arch == "neox":
        model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64))
    else:   # OPT: learned positions (a longer input is an error, not a stretch) and a head tied to the embedding
        model = transformers.OPTForCausalLM(transformers.OPTConfig(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
            max_position_embeddings=64, word_embed_proj_dim=32, bos_token_id=0, eos_token_id=0, pad_token_id=0))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {arch: save_tiny(root / f"tiny-{arch}", arch) for arch in ("neox", "opt")}


@pytest.mark.parametrize("arch", ["neox", "opt"])
def test_scores_equal_transformers_called_directly(saved, arch):
    model, enc, info = pretrained.load_pretrained(saved[arch], "cpu")
    assert info["start"] == 0 and enc.encode_ordinary("the dog") == enc.tok.encode("the dog", add_special_tokens=False)
    pairs = [encode_pair(enc, c, x, [info["start"]]) for c, x in (
        ("the dog sees", " the ball."), ("a cat", " likes some milk."), ("my mom wants the red", " car."),
        ("the little boy finds a book. the dog sees the ball. a cat likes", " some milk."))]
    got = score_requests(model, [(c, x, 1) for c, x in pairs], batch_tokens=64)   # padded batches of mixed lengths
    hf = transformers.AutoModelForCausalLM.from_pretrained(saved[arch]).eval()
    for (c, x), (lp, greedy) in zip(pairs, got):
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([c + x])).logits[0, len(c) - 1:-1]   # the positions predicting x
        want = F.log_softmax(logits, -1)[torch.arange(len(x)), torch.tensor(x)].sum().item()
        assert lp == pytest.approx(want, abs=1e-4)
        assert greedy == (logits.argmax(-1).tolist() == x)


def test_parameter_counts_are_exact(saved):
    neox, enc, _ = pretrained.load_pretrained(saved["neox"], "cpu")
    opt, _, _ = pretrained.load_pretrained(saved["opt"], "cpu")
    V, h = len(enc.tok), 32
    assert V == 300
    # GPT-NeoX layer: 2 LayerNorms (4h), qkv (3h^2 + 3h), dense (h^2 + h), MLP (h x 64 + 64, 64 x h + h)
    layer = 4 * h + 3 * h * h + 3 * h + h * h + h + h * 64 + 64 + 64 * h + h
    assert neox.num_params(non_embedding=True) == 2 * layer + 2 * h            # + the final LayerNorm
    assert neox.num_params() == 2 * layer + 2 * h + 2 * V * h                    # untied embedding and head
    # OPT layer: q, k, v, out with biases (4h^2 + 4h), 2 LayerNorms (4h), fc1 (h x 64 + 64), fc2 (64 x h + h)
    layer = 4 * h * h + 4 * h + 4 * h + h * 64 + 64 + 64 * h + h
    assert opt.num_params(non_embedding=True) == 2 * layer + 2 * h              # no tokens, no learned positions
    assert opt.num_params() == 2 * layer + 2 * h + (64 + 2) * h + V * h        # positions (offset 2), tied V x h once


def test_long_prompts_are_truncated_never_stretched(saved):
    """OPT's learned positions end at 64 (+ its offset of 2): stretching as GPT's RoPE would feed it 128 tokens."""
    model, enc, info = pretrained.load_pretrained(saved["opt"], "cpu")
    long = " ".join(TEXT * 8)
    task = {"name": "t", "family": "t", "kind": "choice", "chance": 0.5, "majority": None, "filtered": True,
            "eval": [{"context": long, "choices": ["yes", "no"], "gold": 0, "text": long}], "demos": []}
    args = type("A", (), {"seed": 0, "long": "rope", "batch_tokens": 256})()
    r = evaluate_task(model, enc, [info["start"]], False, task, 0, args, "cpu", None)
    assert r["rope_scale"] == 1 and r["n"] == 1


def test_evaluate_scores_pretrained_models_as_runs(saved, tmp_path, capsys):
    argv = ["--hf_model", f"{saved['neox']},{saved['opt']}", "--tasks", "templates_adjunct_island,cloze",
            "--shots", "0", "--limit", "6", "--results_dir", str(tmp_path), "--max_new_tokens", "4"]
    evaluate.main(argv)
    out = capsys.readouterr().out
    assert "hf-tiny-neox: " + saved["neox"] + ", 36,352 parameters, prompts start with <|endoftext|>" in out
    d = json.loads((tmp_path / "hf-tiny-neox.json").read_text())
    assert results_problem(d) is None
    assert "train_flops_6nd is missing" in results_problem({k: v for k, v in d.items() if k != "train_flops_6nd"})
    assert (d["hf_model"], d["corpus"], d["tokens_seen"], d["train_flops_6nd"]) == (saved["neox"], "pretrained",
                                                                                   None, None)
    assert {(e["task"], e["n"], e["unigram"]) for e in d["results"]} == {("templates_adjunct_island", 6, None),
                                                                          ("cloze", 6, None)}
    assert len(d["generations"]) == 4
    table = (tmp_path / "table.md").read_text()
    assert "| hf-tiny-neox | " + saved["neox"] + " | pretrained | 0.04M |" in table and "| hf-tiny-opt |" in table
    assert emergence([d]) == ({}, {})   # no compute: not on the emergence plot's axes
    evaluate.main(argv)                 # the same again: kept, not scored again
    assert "hf-tiny-neox.json is up to date" in capsys.readouterr().out


def test_bad_models_are_one_line_errors(saved, tmp_path):
    with pytest.raises(SystemExit, match="no such directory"):
        pretrained.load_pretrained(str(tmp_path / "nothing"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a model directory or hub id"):
        pretrained.load_pretrained(str(tmp_path / "empty"), "cpu")
    cfg = json.loads((open(os.path.join(saved["neox"], "config.json"))).read())
    other = tmp_path / "small-vocab"
    transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**{**cfg, "vocab_size": 100})).save_pretrained(other)
    transformers.AutoTokenizer.from_pretrained(saved["neox"]).save_pretrained(other)
    with pytest.raises(SystemExit, match="tokenizer has 300 tokens, the model's embedding 100"):
        pretrained.load_pretrained(str(other), "cpu")


def test_prompts_start_with_bos_and_samples_stop_at_either(saved, tmp_path):
    """A BOS token other than EOS (OPT's </s>, say) starts the prompts; a sample ends at EOS or BOS. Special tokens'
    text is only text, as in tiktoken's encode_ordinary."""
    model, enc, info = pretrained.load_pretrained(save_tiny(tmp_path / "bos", "neox", bos="<s>"), "cpu")
    assert (info["start"], info["stop"]) == (1, {0, 1})
    assert 0 not in enc.encode_ordinary("a <|endoftext|> b") and "<|endoftext|>" in enc.decode(
        enc.encode_ordinary("a <|endoftext|> b"))
    # every hidden state the same (final LayerNorm: weight 0, bias b) and EOS's head row along b: EOS always wins
    norm, head = model.hf.gpt_neox.final_layer_norm, model.hf.get_output_embeddings()
    with torch.no_grad():
        norm.weight.zero_(), norm.bias.fill_(1.0), head.weight.zero_(), head.weight[0].fill_(1.0)
    args = type("A", (), {"seed": 0, "max_new_tokens": 5, "temperature": 0.0})()
    got = evaluate.generate(model, enc, [info["start"]], False, info["stop"], ["the dog"], args, "cpu")
    assert got == [{"prompt": "the dog", "text": ""}]   # cut at the first token, EOS
    raw = model.generate(torch.tensor([[1] + enc.encode_ordinary("the dog")]), 3, temperature=0)
    assert raw[0, -3:].tolist() == [0, 0, 0]


def test_hub_results_are_reused_by_the_model_not_its_spelling(saved, tmp_path, capsys, monkeypatch):
    """A local directory is known by its absolute path and files: another spelling of it reuses its results, saving
    it again scores it again; --sos and --long (which never apply to it) do not make its results incomparable."""
    base = ["--tasks", "templates_adjunct_island", "--shots", "0", "--limit", "4", "--results_dir", str(tmp_path / "r"),
            "--max_new_tokens", "2"]
    evaluate.main(["--hf_model", saved["neox"]] + base)
    monkeypatch.chdir(os.path.dirname(saved["neox"]))
    for flags in ([], ["--sos", "yes"], ["--long", "truncate"]):
        evaluate.main(["--hf_model", "./tiny-neox"] + base + flags)
        assert "hf-tiny-neox.json is up to date" in capsys.readouterr().out
    os.utime(os.path.join(saved["neox"], "config.json"))   # saved again (a new date)
    evaluate.main(["--hf_model", "./tiny-neox"] + base)
    assert "scored on an earlier state of this checkpoint" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="two of the models would write .*hf-tiny-neox.json"):
        evaluate.main(["--hf_model", f"{saved['neox']},./tiny-neox/"] + base)
    with pytest.raises(SystemExit, match="--hf_model ./nothing: no such directory"):
        evaluate.main(["--hf_model", "./nothing"] + base)
