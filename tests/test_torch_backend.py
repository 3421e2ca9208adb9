"""The torch backend on tiny random transformers MoEs built here from configs (no downloads): every
family's greedy speculation equals plain decoding under every policy, routing has the llama.cpp
backend's shape and does not depend on the batch, rollback reproduces, bad inputs fail in one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import backends.llamacpp  # noqa: F401,I001  (llama.cpp before numpy, see backends/llamacpp/lib.py)
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from backends.base import BackendError, check_vocab_compatible  # noqa: E402
from backends.model_drafter import ModelDrafter  # noqa: E402
from backends.ngram import NgramDrafter  # noqa: E402
from backends.torch_backend import load_target, read_info  # noqa: E402
from cascade_tui.demo.torch_export import write_tokenizer  # noqa: E402
from cascade_tui.engine import GenerationConfig, IterationEvent, SpeculativeDecoder  # noqa: E402
from cascade_tui.factory import BPEVocab, default_vocab, write_model  # noqa: E402
from cascade_tui.policy import make_policy  # noqa: E402

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()

POLICIES = ["off", "static:1", "static:3", "static:6", "cascade", "heuristic"]
PROMPTS = ["def fibonacci(n):\n    ", "import os\nclass Stack:"]
EOS = 2047
COMMON = dict(vocab_size=2048, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=None,
              tie_word_embeddings=False)


def family_config(family: str):
    c = transformers
    if family == "mixtral":
        return c.MixtralConfig(**COMMON, intermediate_size=48, num_local_experts=8, num_experts_per_tok=2)
    if family == "qwen2_moe":  # layer 0 dense (mlp_only_layers), a shared expert, top-k not renormalised
        return c.Qwen2MoeConfig(**COMMON, intermediate_size=64, moe_intermediate_size=48,
                                shared_expert_intermediate_size=64, num_experts=8, num_experts_per_tok=2,
                                mlp_only_layers=[0], norm_topk_prob=False)
    if family == "qwen3_moe":
        return c.Qwen3MoeConfig(**COMMON, head_dim=16, intermediate_size=64, moe_intermediate_size=48,
                                num_experts=8, num_experts_per_tok=2, norm_topk_prob=True)
    if family == "olmoe":
        return c.OlmoeConfig(**{**COMMON, "num_key_value_heads": 4}, intermediate_size=48, num_experts=8,
                             num_experts_per_tok=2)
    if family == "llama":  # dense
        return c.LlamaConfig(**{**COMMON, "num_hidden_layers": 1}, intermediate_size=96)
    raise ValueError(family)


FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]
MOE_LAYERS = {"mixtral": (0, 1, 2), "qwen2_moe": (1, 2), "qwen3_moe": (0, 1, 2), "olmoe": (0, 1, 2)}


def build(family: str, path: Path, *, seed: int = 0, noise: float = 0.0, base: dict | None = None,
          vocab: BPEVocab | None = None) -> Path:
    """Save a random model of ``family`` (or ``base``'s weights plus relative ``noise``) with the
    factory's BPE tokenizer. The lm head and routers are scaled up so that argmaxes and top-k
    choices have clear margins (random init at 0.02 gives near-uniform logits)."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(family_config(family))
    sd = model.state_dict()
    with torch.no_grad():
        for name, p in sd.items():
            if base is not None:
                p.copy_(base[name] + noise * base[name].std() * torch.randn_like(p) if p.numel() > 1 else base[name])
            elif name.endswith("lm_head.weight"):
                p.normal_(0, 0.35)
            elif name.endswith("mlp.gate.weight"):
                p.normal_(0, 0.4)
            elif p.dim() >= 2:
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    write_tokenizer(path, vocab or default_vocab())
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch-models")
    out = {}
    for fam in FAMILIES + ["llama"]:
        out[fam] = build(fam, d / fam, seed=1)
        if fam != "llama":
            base = {k: v.clone() for k, v in
                    transformers.AutoModelForCausalLM.from_pretrained(out[fam], dtype=torch.float32).state_dict().items()}
            # a noisy copy drafts for it: drafts mostly but not always accepted
            out[f"{fam}-draft"] = build(fam, d / f"{fam}-draft", noise=0.05, base=base)
    return out


def load(path, **kw):
    kw.setdefault("n_ctx", 256)
    kw.setdefault("n_threads", 1)
    kw.setdefault("device", "cpu")
    return load_target(path, **kw)


@pytest.fixture(scope="module")
def loaded(ckpts):
    models = {}
    yield lambda name, **kw: models.setdefault(name, load(ckpts[name], **kw))
    for m in models.values():
        m.close()


def generate(target, drafter, policy, prompt, n=28, temperature=0.0, seed=0):
    params = {"test_iters": 2} if policy == "cascade" else None
    if drafter is not None:
        drafter.reset()
    target.truncate(0)
    dec = SpeculativeDecoder(target, drafter, make_policy(policy, params))
    its = [e for e in dec.generate(prompt, GenerationConfig(max_tokens=n, temperature=temperature, seed=seed))
           if isinstance(e, IterationEvent)]
    return [t for e in its for t in e.emitted], its


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_speculation_equals_off_for_every_policy(family, loaded):
    target = loaded(family)
    assert target.info.arch == family and target.info.moe_layers == MOE_LAYERS[family]
    assert (target.info.n_expert, target.info.n_expert_used) == (8, 2)
    drafter = ModelDrafter(loaded(f"{family}-draft", routing=False), max_catch_up=8)
    accepted = rejected = 0
    for prompt in PROMPTS:
        ref, _ = generate(target, None, "off", prompt)
        assert len(ref) == 28
        for policy in POLICIES[1:]:
            out, its = generate(target, drafter, policy, prompt)
            assert out == ref, (family, policy, prompt)
            for e in its:
                accepted += e.accepted
                rejected += len(e.drafted) - e.accepted
                assert e.routing is not None
        out, _ = generate(target, NgramDrafter(), "static:3", prompt)
        assert out == ref
    assert accepted > 20 and rejected > 20, (accepted, rejected)  # both paths were exercised


@pytest.mark.parametrize("family", FAMILIES)
def test_routing_shape_topk_and_batch_invariance(family, ckpts):
    target = load(ckpts[family], capture_probs=True)
    try:
        ids = target.tokenize("def area(r):\n    return 3.14159 * r * r\n")
        n = len(ids)
        whole = target.eval(ids)
        n_moe = len(MOE_LAYERS[family])
        assert whole.routing.shape == (n_moe, n, 2) and whole.routing.dtype == np.int32
        assert whole.logits.shape == (n, 2048) and whole.logits.dtype == np.float32
        probs = target.last_router_probs
        assert probs.shape == (n_moe, n, 8)
        top = np.argsort(-probs, axis=-1, kind="stable")[..., :2]
        assert (np.sort(top, -1) == np.sort(whole.routing, -1)).all()  # the router's top-k
        target.truncate(0)
        one = [target.eval([t]) for t in ids]  # token by token through the cache
        stepped = np.concatenate([r.routing for r in one], axis=1)
        assert (np.sort(stepped, -1) == np.sort(whole.routing, -1)).all()
        np.testing.assert_allclose(np.concatenate([r.logits for r in one]), whole.logits, atol=2e-4, rtol=1e-4)
        target.set_routing(False)
        assert target.eval([5]).routing is None
        target.set_routing(True)
        assert target.eval([]).routing.shape == (n_moe, 0, 2)
    finally:
        target.close()


def test_routing_off_and_dense(ckpts):
    t = load(ckpts["mixtral"], routing=False)
    try:
        r = t.eval([1, 2, 3])
        assert r.routing is None and r.logits.shape == (3, 2048)
        with pytest.raises(BackendError, match="not enabled"):
            t.set_routing(True)
    finally:
        t.close()
    d = load(ckpts["llama"])
    try:
        assert d.info.moe_layers == () and d.info.n_expert == 0 and not d.info.is_moe
        assert "dense model" in d.info.extra["note"]
        assert d.eval([1, 2]).routing is None
    finally:
        d.close()


def test_rollback_reproduces_a_fresh_evaluation(loaded):
    t = loaded("qwen3_moe")
    t.truncate(0)
    a = t.tokenize("x = [1, 2, 3]")
    t.eval(a + [100, 200, 300])
    assert t.n_past == len(a) + 3
    t.truncate(len(a))
    assert t.n_past == len(a)
    after = t.eval([400, 500])
    t.truncate(0)
    fresh = t.eval(a + [400, 500])
    np.testing.assert_allclose(after.logits, fresh.logits[-2:], atol=2e-4, rtol=1e-4)
    assert (np.sort(after.routing, -1) == np.sort(fresh.routing[:, -2:], -1)).all()
    t.truncate(t.n_past)  # no-op
    with pytest.raises(BackendError, match="cannot keep"):
        t.truncate(t.n_past + 1)
    with pytest.raises(BackendError, match="cannot keep"):
        t.truncate(-1)
    t.truncate(0)


def test_eval_bounds_context_and_close(ckpts):
    t = load(ckpts["olmoe"], n_ctx=16)
    with pytest.raises(BackendError, match="outside the vocabulary"):
        t.eval([1, 2048])
    with pytest.raises(BackendError, match="outside the vocabulary"):
        t.eval([-1])
    assert t.n_past == 0
    t.eval(list(range(10)))
    with pytest.raises(BackendError, match="context full"):
        t.eval(list(range(7)))
    assert t.n_past == 10
    t.close()
    with pytest.raises(BackendError, match="closed"):
        t.eval([1])
    t.close()  # twice is fine


def test_sampling_runs_losslessly_through_the_engine(loaded):
    target = loaded("mixtral")
    drafter = ModelDrafter(loaded("mixtral-draft", routing=False))
    a, its = generate(target, drafter, "static:3", PROMPTS[0], n=24, temperature=0.8, seed=7)
    b, _ = generate(target, drafter, "static:3", PROMPTS[0], n=24, temperature=0.8, seed=7)
    assert a == b and len(a) == 24 and all(0 <= t < 2048 for t in a)  # seeded: reproducible
    assert any(e.accepted for e in its) and any(e.accepted < len(e.drafted) for e in its)


def test_tokenizer_matches_llama_cpp_and_gguf_drafters_work(ckpts, loaded, tmp_path):
    """The same vocabulary in a GGUF: the same ids, pieces and fingerprint; a GGUF model drafts for a
    torch target (and the reverse); a drafter with another vocabulary is refused in one line."""
    from backends.llamacpp import load_target as load_gguf

    target = loaded("mixtral")
    g = write_model(tmp_path / "d.gguf", arch="llama", n_layer=1, n_embd=64, n_head=4, n_ff=96, n_expert=0, seed=3)
    gd = load_gguf(g, n_ctx=256, n_threads=1, routing=False)
    try:
        text = "héllo wörld\n\tdef f(x): return x ** 2  # ✓ <|endoftext|>"
        assert target.tokenize(text) == gd.tokenize(text)
        assert target.tokenize(text, add_bos=False) == gd.tokenize(text, add_bos=False)
        assert target.token_pieces == gd.token_pieces
        assert target.info.vocab_fingerprint == gd.info.vocab_fingerprint == read_info(ckpts["mixtral"]).vocab_fingerprint
        ids = target.tokenize(text)
        assert target.detokenize(ids) == gd.detokenize(ids)
        assert target.eos_ids == frozenset({EOS}) and target.info.extra["add_bos"]
        check_vocab_compatible(target, gd)
        ref, _ = generate(target, None, "off", PROMPTS[1])
        out, _ = generate(target, ModelDrafter(gd), "static:2", PROMPTS[1])
        assert out == ref
    finally:
        gd.close()
    v = default_vocab()  # a smaller vocabulary: fewer merges, EOS at 1799
    other = BPEVocab(tokens=v.tokens[:1799] + ("<|endoftext|>",), merges=v.merges[: 1799 - 256], eos_id=1799,
                     bos_id=1799)
    odir = build("llama", tmp_path / "other", vocab=other)
    od = load(odir)
    try:
        with pytest.raises(BackendError, match=r"vocabularies differ at token id 1799") as e:
            check_vocab_compatible(target, od)
        assert "\n" not in str(e.value)
    finally:
        od.close()


# -- bad inputs: one line, exit 2, no traceback ------------------------------------------------


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cascade_tui", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bad_dirs(ckpts, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = ckpts["mixtral"]
    out = {"missing": d / "nope"}
    (d / "file.txt").write_text("x")
    out["file"] = d / "file.txt"
    out["empty"] = d / "empty"
    out["empty"].mkdir()

    def copy(name):
        p = d / name
        shutil.copytree(good, p)
        return p

    p = copy("badjson")
    (p / "config.json").write_text("{not json")
    out["badjson"] = p
    p = copy("noweights")
    (p / "model.safetensors").rename(p / "pytorch_model.bin")
    out["noweights"] = p
    p = copy("truncated")
    data = (p / "model.safetensors").read_bytes()
    (p / "model.safetensors").write_bytes(data[: len(data) // 2])
    out["truncated"] = p
    p = copy("shard")
    (p / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    out["shard"] = p
    p = copy("missingweights")
    from safetensors.numpy import load_file, save_file

    t = load_file(p / "model.safetensors")
    t.pop(next(k for k in sorted(t) if k.startswith("model.layers.1.") and k.endswith("gate.weight")
               and "experts" not in k))  # the router of layer 1 (saved under Mixtral's original names)
    save_file(t, str(p / "model.safetensors"), metadata={"format": "pt"})
    out["missingweights"] = p
    for name, mt in (("unknown", "not_a_real_arch"), ("notcausal", "vit"), ("hybrid", "qwen3_next")):
        p = copy(name)
        cfg = json.loads((p / "config.json").read_text())
        cfg["model_type"] = mt
        (p / "config.json").write_text(json.dumps(cfg))
        out[name] = p
    p = copy("notok")
    (p / "tokenizer.json").unlink()
    (p / "tokenizer_config.json").unlink()
    out["notok"] = p
    p = copy("bigtok")  # a tokenizer with more tokens than the model's output layer
    cfg = json.loads((p / "config.json").read_text())
    cfg["vocab_size"] = 1024
    (p / "config.json").write_text(json.dumps(cfg))
    t = load_file(p / "model.safetensors")
    t["model.embed_tokens.weight"] = t["model.embed_tokens.weight"][:1024].copy()
    t["lm_head.weight"] = t["lm_head.weight"][:1024].copy()
    save_file(t, str(p / "model.safetensors"), metadata={"format": "pt"})
    out["bigtok"] = p
    return out


EXPECTED = {
    "missing": "no such directory",
    "file": "is a file",
    "empty": "config.json is missing",
    "badjson": "not valid JSON",
    "noweights": "no *.safetensors weights (found pytorch_model.bin",
    "truncated": "is truncated",
    "shard": "model-00002-of-00002.safetensors is missing",
    "missingweights": "incomplete checkpoint: 1 weights missing (first: model.layers.1.",
    "unknown": "does not support the architecture 'not_a_real_arch'",
    "notcausal": "'vit' is not a causal language model",
    "hybrid": "'qwen3_next' is not supported",
    "notok": "no tokenizer",
    "bigtok": "tokenizer mismatch: the tokenizer has 2048 tokens but the model's output layer has 1024",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_checkpoints_give_one_line_errors(bad_dirs, kind):
    with pytest.raises(BackendError) as e:
        load(bad_dirs[kind])
    msg = str(e.value)
    assert EXPECTED[kind] in msg and "\n" not in msg, msg


def test_bad_arguments(ckpts):
    for kw, pat in ((dict(device="tpu"), "unknown device"), (dict(dtype="int8"), "unknown dtype"),
                    (dict(n_ctx=0), "context size"), (dict(n_threads=0), "thread count")):
        with pytest.raises(BackendError, match=pat):
            load(ckpts["mixtral"], **kw)
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="sees no CUDA GPU"):
            load(ckpts["mixtral"], device="cuda")


def test_cli_bad_inputs_exit_2_with_one_line(bad_dirs, ckpts, tmp_path):
    cases = [("--model", bad_dirs["missing"], "--backend", "torch"), ("--model", bad_dirs["shard"]),
             ("--model", bad_dirs["unknown"]), ("--model", ckpts["mixtral"], "--device", "gpu"),
             ("--model", ckpts["mixtral"], "--draft", bad_dirs["empty"])]
    v = default_vocab()
    other = BPEVocab(tokens=v.tokens[:1799] + ("<|endoftext|>",), merges=v.merges[: 1799 - 256], eos_id=1799,
                     bos_id=1799)
    gguf = write_model(tmp_path / "other.gguf", arch="llama", n_layer=1, n_embd=64, n_head=4, n_ff=96, n_expert=0,
                       vocab=other)
    cases.append(("--model", ckpts["mixtral"], "--draft", gguf))  # a GGUF drafter with another vocabulary
    for args in cases:
        p = cli("run", *args, "--prompt", "hi", "--no-record", "-n", "4")
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cascade-tui: error: "), (args, p.stderr)
        assert "Traceback" not in p.stderr
    assert "vocabularies differ at token id 1799" in p.stderr


def test_cli_run_json_on_a_checkpoint_dir_matches_off(ckpts, tmp_path):
    """`auto` picks torch for a directory; a torch drafter directory; greedy cascade = off."""
    outs = {}
    for policy in ("off", "cascade"):
        p = cli("run", "--model", ckpts["qwen2_moe"], "--draft", ckpts["qwen2_moe-draft"], "--prompt", PROMPTS[0],
                "--policy", policy, "--threads", "1", "-n", "24", "--json", "--record", tmp_path / f"{policy}.cascade.jsonl")
        assert p.returncode == 0, p.stderr[-2000:]
        outs[policy] = json.loads(p.stdout)
    assert outs["cascade"]["text"] == outs["off"]["text"] and outs["off"]["generated_tokens"] == 24
    assert outs["cascade"]["mean_unique_experts"] is not None
    header = json.loads((tmp_path / "cascade.cascade.jsonl").read_text().splitlines()[0])
    assert header["backend"] == "torch" and header["model"]["arch"] == "qwen2_moe"


def test_inspect_a_checkpoint_dir_without_torch_weights_loaded(ckpts):
    info = read_info(ckpts["qwen2_moe"])
    assert (info.backend, info.arch, info.moe_layers, info.n_expert, info.n_expert_used) == \
        ("torch", "qwen2_moe", (1, 2), 8, 2)
    p = cli("inspect", ckpts["qwen2_moe"], "--json", "--draft", ckpts["llama"])
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["backend"] == "torch" and rep["draft"]["compatible"] is True


OTHER_FAMILIES = {  # beyond the four required: measured to work the same way (see checkpoint.ALSO_WORKING_MOE)
    "phimoe": {}, "granitemoe": {}, "glm4_moe": {}, "gpt_oss": {},
    "deepseek_v2": dict(num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8,
                        qk_nope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1,
                        first_k_dense_replace=0, n_group=1, topk_group=1),
}


@pytest.mark.parametrize("family", sorted(OTHER_FAMILIES))
def test_other_moe_families_greedy_equivalence(family, tmp_path):
    from backends.torch_backend.checkpoint import ALSO_WORKING_MOE

    assert family in ALSO_WORKING_MOE
    kw = dict(COMMON, num_hidden_layers=2, head_dim=16, intermediate_size=64, moe_intermediate_size=32,
              num_local_experts=8, num_experts=8, num_experts_per_tok=2, **OTHER_FAMILIES[family])
    torch.manual_seed(2)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(family, **kw))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.35 if name.endswith("lm_head.weight") else 0.1)
    model.save_pretrained(tmp_path)
    write_tokenizer(tmp_path, default_vocab())
    t = load(tmp_path)
    d = load(tmp_path, routing=False)
    try:
        assert t.info.arch == family and t.info.n_expert == 8 and t.info.n_expert_used == 2 and t.info.moe_layers
        ref, _ = generate(t, None, "off", PROMPTS[0], n=20)
        for policy in ("static:3", "cascade"):
            out, its = generate(t, ModelDrafter(d), policy, PROMPTS[0], n=20)
            assert out == ref and all(e.routing.shape[0] == len(t.info.moe_layers) for e in its)
        assert generate(t, NgramDrafter(), "static:2", PROMPTS[0], n=20)[0] == ref
    finally:
        t.close()
        d.close()


def test_sentencepiece_style_tokenizer_pieces(tmp_path):
    """Mixtral/Llama checkpoints ship a SentencePiece-style BPE (``▁`` for spaces, ``<0xAB>`` byte
    fallback): token bytes are what llama.cpp renders (``▁`` -> space, byte tokens -> that byte), so
    text split across byte tokens detokenizes whole."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    corpus = "def hello world(x): return x + 1\nthe quick brown fox jumps over the lazy dog"
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    for c in sorted(set(corpus.replace(" ", "▁")) - {"\n"} | {"▁"}):
        vocab.setdefault(c, len(vocab))
    merges = [("▁", "t"), ("h", "e"), ("▁t", "he"), ("▁", "f"), ("o", "x"), ("▁f", "ox")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "add_bos_token": True, "legacy": False}))
    cfg = transformers.MixtralConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                                     num_experts_per_tok=2, bos_token_id=1, eos_token_id=2)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    t = load(tmp_path)
    try:
        text = "the lazy ✓ fox\nnew"
        ids = t.tokenize(text)
        assert ids[0] == 1 and t.info.extra["add_bos"] and t.eos_ids == frozenset({2})
        assert t.detokenize(ids) == " " + text  # llama.cpp's SPM pieces keep the leading space
        assert [t.token_bytes(i) for i in (1, 3, vocab["<0x0A>"], vocab["▁fox"])] == [b"<s>", b"\x00", b"\n", b" fox"]
        assert t.info.vocab_fingerprint == read_info(tmp_path).vocab_fingerprint
    finally:
        t.close()


def test_without_torch_installed_one_line_says_how_to_get_it(ckpts, tmp_path):
    """torch is an optional extra: with it missing (blocked here), `--backend torch` fails in one
    line naming the extra, and `inspect` of a checkpoint still works (no torch needed)."""
    block = "import sys; sys.modules.update(torch=None, transformers=None); from cascade_tui.cli import main; main()"
    for args, code, expect in (
        (["run", "--model", ckpts["olmoe"], "--prompt", "x", "--no-record"], 2, 'pip install "cascade-tui[torch]"'),
        (["inspect", ckpts["olmoe"], "--json"], 0, '"arch": "olmoe"'),
    ):
        p = subprocess.run([sys.executable, "-c", block, *map(str, args)], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "CASCADE_TUI_CACHE": str(tmp_path)})
        assert p.returncode == code, p.stderr[-2000:]
        assert expect in (p.stderr if code else p.stdout) and "Traceback" not in p.stderr


def test_a_failed_forward_rolls_every_layer_back(ckpts):
    t = load(ckpts["mixtral"])
    try:
        t.eval([1, 2, 3])
        boom = t._model.model.layers[2].register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(BackendError, match="forward pass failed: boom"):
            t.eval([4, 5])  # layers 0 and 1 appended to their caches, layer 2 failed
        boom.remove()
        assert t.n_past == 3
        after = t.eval([4, 5])
        t.truncate(0)
        np.testing.assert_allclose(after.logits, t.eval([1, 2, 3, 4, 5]).logits[-2:], atol=2e-4, rtol=1e-4)
    finally:
        t.close()
