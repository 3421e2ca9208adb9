"""The command line end to end on real llama.cpp with generated GGUF models."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import backends.llamacpp  # noqa: F401  (llama.cpp before numpy, see backends/llamacpp/lib.py)
from cascade_tui.factory import ARCHS, BPEVocab, default_vocab, write_model

PROMPT = "def fibonacci(n):\n    "


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-models")
    out = {}
    for arch in ARCHS:
        kw = dict(arch=arch, n_layer=2, n_embd=64, n_head=4, n_ff=96, n_expert=8, n_expert_used=2, seed=1)
        out[arch] = write_model(d / f"{arch}.gguf", **kw)
        # an f16 copy drafts for it: nearly the same logits, so drafts are mostly but not always
        # accepted, which exercises acceptance, rejection and KV rollback on both models
        out[f"{arch}-f16"] = write_model(d / f"{arch}-f16.gguf", dtype="f16", **kw)
    out["draft"] = write_model(d / "draft.gguf", arch="llama", n_layer=1, n_embd=64, n_head=4,
                               n_ff=96, n_expert=0, seed=2)
    return out


def cli(*args, check=None, env=None, input=None):
    """Run the installed console entry point in a subprocess: real exit codes, real stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "cascade_tui", *map(str, args)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}, input=input,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def run_json(model, draft, policy, *extra):
    p = cli("run", "--model", model, "--draft", draft, "--prompt", PROMPT, "--policy", policy,
            "--threads", "1", "--max-tokens", "48", "--no-record", "--json", *extra, check=0)
    return json.loads(p.stdout)


def test_help_and_version():
    p = cli("--help", check=0)
    for cmd in ("run", "inspect"):
        assert cmd in p.stdout
    assert cli("--version", check=0).stdout.startswith("cascade-tui ")


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_speculation_prints_exactly_the_text_of_off(models, arch):
    draft = models[f"{arch}-f16"]
    off = run_json(models[arch], draft, "off")
    assert off["generated_tokens"] == 48 and off["k_histogram"] == {"0": off["iterations"]}
    runs = {p: run_json(models[arch], draft, p) for p in ("static:4", "cascade", "heuristic", "learned")}
    for policy, spec in runs.items():
        assert spec["text"] == off["text"], (arch, policy)
        assert spec["generated_tokens"] == off["generated_tokens"]
    # static:4 really speculated: drafts were accepted (fewer iterations than tokens) and the
    # 5-token verify batches were routed through more experts than single tokens
    s4 = runs["static:4"]
    assert 0 < s4["acceptance_rate"] and s4["iterations"] < 48
    assert s4["mean_unique_experts"] > off["mean_unique_experts"]
    # and a dense drafter with another architecture works too
    dense = run_json(models[arch], models["draft"], "static:3")
    assert dense["text"] == off["text"]


def test_ngram_drafter_with_any_model(models):
    off = run_json(models["llama"], "ngram", "off")
    s3 = run_json(models["llama"], "ngram", "static:3")
    assert s3["text"] == off["text"] and s3["draft"] == "ngram"


def test_run_json_fields_and_session_recording(models, tmp_path):
    rec = tmp_path / "s.cascade.jsonl"
    p = cli("run", "--model", models["qwen3moe"], "--draft", models["draft"], "--prompt", PROMPT,
            "--threads", "1", "--max-tokens", "24", "--record", rec, "--json", check=0)
    out = json.loads(p.stdout)
    for key in ("text", "prompt_tokens", "generated_tokens", "iterations", "wall_s", "tokens_per_s",
                "policy", "draft", "acceptance_rate", "mean_accepted", "k_histogram",
                "phase_iterations", "mean_utility", "mean_unique_experts", "session"):
        assert key in out, key
    assert out["session"] == str(rec) and out["generated_tokens"] == 24
    assert out["tokens_per_s"] > 0 and set(out["phase_iterations"]) <= {"base", "test", "set"}
    lines = [json.loads(line) for line in rec.read_text().splitlines()]
    head = lines[0]
    assert head["format"] == "cascade-session" and head["version"] == 1
    assert head["model"]["arch"] == "qwen3moe" and head["model"]["n_expert"] == 8
    assert head["policy"]["name"] == "learned"  # the default
    # the CLI loads llama.cpp's libraries before numpy (numpy first segfaulted on a CUDA host)
    assert head["model"]["extra"]["numpy_imported_first"] is False
    its = [e for e in lines[1:] if e["type"] == "iteration"]
    assert len(its) == out["iterations"]
    assert all(len(e["routing"]) == 2 and len(e["routing"][0]) == e["k"] + 1 for e in its)
    assert lines[-1]["type"] == "end" and lines[-1]["generated_tokens"] == 24
    assert [e["seq"] for e in lines[1:]] == list(range(len(lines) - 1))
    assert head["model"]["sha256"] == hashlib.sha256(Path(models["qwen3moe"]).read_bytes()).hexdigest()
    assert head["machine"]["threads"] == 1 and head["generation"]["max_tokens"] == 24
    # where the layers ran, in the recording and in run --json (tests/test_gpu_offload.py: a GPU)
    assert out["device"] == head["machine"]["device"]
    assert out["offloaded_layers"] == head["machine"].get("offloaded_layers")
    if not backends.llamacpp.lib.llc.llama_supports_gpu_offload():
        assert out["device"] == "cpu" and out["offloaded_layers"] is None
    # the statistics computed from the recording are the ones run --json printed
    from cascade_tui.session import read_session
    from cascade_tui.stats import run_summary, total_stats

    read = read_session(rec)
    assert run_summary(total_stats(read.events), read.header, str(rec)) == out


def test_streaming_output_and_no_routing(models):
    p = cli("run", "--model", models["llama"], "--draft", models["draft"], "--prompt", PROMPT,
            "--threads", "1", "--max-tokens", "16", "--no-record", "--no-routing", check=0)
    off = run_json(models["llama"], models["draft"], "off")
    assert p.stdout.rstrip("\n") == off["text"].rstrip("\n") or p.stdout.startswith(off["text"][:10])
    assert "tok/s" in p.stderr and "mean K" in p.stderr
    j = run_json(models["llama"], models["draft"], "cascade", "--no-routing")
    assert j["mean_unique_experts"] is None


def test_inspect(models):
    p = cli("inspect", models["qwen2moe"], "--json", check=0)
    info = json.loads(p.stdout)
    assert info["arch"] == "qwen2moe" and info["n_expert"] == 8 and info["n_expert_used"] == 2
    assert info["moe_layers"] == [0, 1] and info["n_vocab"] == 2048
    # the devices a load would offload to: none on a CPU-only build (tests/test_gpu_offload.py
    # checks a build that offloads)
    lib = backends.llamacpp.lib
    lib.ensure_backend()
    assert info["extra"]["offload_devices"] == [
        {"name": d.name, "description": d.description, "memory_total": d.memory_total}
        for d in lib.devices() if d.offloads]
    p = cli("inspect", models["llama"], "--draft", models["draft"], check=0)
    assert "compatible" in p.stdout and "NOT" not in p.stdout
    assert "GPU offload" in p.stdout


# -- bad input: one clear line on stderr, exit 2, no traceback ------------------------------------

def _expect_user_error(proc, *needles):
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def _other_vocab_drafter(path: Path) -> Path:
    v = default_vocab()
    tokens = list(v.tokens)
    tokens[300], tokens[301] = tokens[301], tokens[300]
    other = BPEVocab(tokens=tokens, merges=v.merges, eos_id=v.eos_id, bos_id=v.bos_id)
    return write_model(path, arch="llama", n_layer=1, n_embd=64, n_head=4, n_ff=96, n_expert=0, vocab=other)


def _unknown_arch(path: Path) -> Path:
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "frobnicator")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((16, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_bad_inputs(models, tmp_path):
    base = ["run", "--prompt", "hi", "--threads", "1", "--no-record", "--max-tokens", "4"]
    _expect_user_error(cli(*base, "--model", tmp_path / "missing.gguf"), "not found")
    notgguf = tmp_path / "notes.gguf"
    notgguf.write_text("hello, I am not a model\n")
    _expect_user_error(cli(*base, "--model", notgguf), "not a GGUF")
    data = Path(models["llama"]).read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[: len(data) // 2])
    _expect_user_error(cli(*base, "--model", trunc), "truncated")
    _expect_user_error(cli(*base, "--model", _unknown_arch(tmp_path / "alien.gguf")), "frobnicator")
    other = _other_vocab_drafter(tmp_path / "other.gguf")
    _expect_user_error(cli(*base, "--model", models["llama"], "--draft", other), "300")
    _expect_user_error(cli(*base, "--model", models["llama"], "--policy", "static:x"), "k")
    _expect_user_error(cli(*base, "--model", models["llama"], "--set", "k_max=99"), "k_max")
    _expect_user_error(cli(*base, "--model", models["llama"], "--set", "nonexistent=1"),
                       "no parameter 'nonexistent'", "known: accept_halflife, accept_prior")
    _expect_user_error(cli(*base, "--model", models["llama"], "--backend", "torchy"), "unknown backend 'torchy'")
    _expect_user_error(cli(*base, "--model", tmp_path), "not a transformers checkpoint", "config.json is missing")
    _expect_user_error(cli(*base, "--model", models["llama"], "--set", "oops"), "KEY=VALUE")
    _expect_user_error(cli(*base, "--model", models["llama"], "--n-gpu-layers", "8"), "gpu")
    long_prompt = "x = 1\n" * 200
    _expect_user_error(
        cli("run", "--prompt", long_prompt, "--ctx", "64", "--threads", "1", "--no-record",
            "--model", models["llama"]), "context")
    _expect_user_error(cli("run", "--threads", "1", "--model", models["llama"]), "prompt")
    _expect_user_error(cli("inspect", notgguf), "not a GGUF")


def test_generation_past_the_context_stops_cleanly(models):
    p = cli("run", "--model", models["llama"], "--draft", models["draft"], "--prompt", PROMPT,
            "--threads", "1", "--ctx", "32", "--max-tokens", "500", "--no-record", "--json",
            "--policy", "static:4", check=0)
    out = json.loads(p.stdout)
    assert out["stop_reason"] == "context"
    assert out["prompt_tokens"] + out["generated_tokens"] == 33  # a full cache still predicts one more


def test_ctrl_c_keeps_output_and_recording(tmp_path):
    import signal
    import time

    model = write_model(tmp_path / "slow.gguf", arch="llama", n_layer=4, n_embd=256, n_head=4,
                        n_ff=256, n_expert=8, n_expert_used=2, seed=3)
    rec = tmp_path / "interrupted.cascade.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascade_tui", "run", "--model", model, "--draft", "ngram",
         "--prompt", PROMPT, "--threads", "1", "--max-tokens", "2000", "--record", rec],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if rec.exists() and rec.read_text().count('"type":"iteration"') >= 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    lines = [json.loads(line) for line in rec.read_text().splitlines()]
    its = [e for e in lines[1:] if e["type"] == "iteration"]
    assert len(its) >= 20
    assert lines[-1]["type"] == "end" and lines[-1]["reason"] == "interrupted"
    assert lines[-1]["generated_tokens"] == sum(len(e["emitted"]) for e in its)
    # everything generated before Ctrl-C was printed
    assert out.startswith("".join(e["text"] for e in its))


def test_demo_pair_is_the_default():
    """A new user's first command: no --model, the bundled demo pair, real speculation."""
    outs = {}
    for policy in ("off", "static:3", "cascade"):
        p = cli("run", "--prompt", "def fibonacci(n):", "--policy", policy, "--threads", "1",
                "--max-tokens", "64", "--no-record", "--json", check=0)
        outs[policy] = json.loads(p.stdout)
    off = outs["off"]
    model = Path(off["model"])  # the grown, memory-bound copy of demo/target.gguf in the user cache
    assert model.name == "target.gguf" and "demo" in model.parts
    assert off["draft"].endswith(os.path.join("demo", "draft.gguf"))
    assert off["generated_tokens"] == 64 and off["text"].strip()
    for policy in ("static:3", "cascade"):
        assert outs[policy]["text"] == off["text"], policy
    s3 = outs["static:3"]
    assert 0 < s3["acceptance_rate"] < 1  # a real drafter: often right, not always
    assert s3["mean_unique_experts"] > off["mean_unique_experts"] >= 2.0


def test_draft_none_runs_as_off_with_a_note(models):
    p = cli("run", "--model", models["llama"], "--draft", "none", "--prompt", PROMPT, "--threads", "1",
            "--max-tokens", "8", "--no-record", "--json", check=0)
    assert "note: no drafter, so policy learned runs as off" in p.stderr
    out = json.loads(p.stdout)
    assert out["policy"] == "off" and out["draft"] == "none" and out["k_histogram"] == {"0": out["iterations"]}


def test_chat_refuses_bad_input_before_the_screen_opens(models, tmp_path):
    _expect_user_error(cli("chat", "--model", tmp_path / "missing.gguf"), "not found")
    _expect_user_error(cli("chat", "--model", models["llama"], "--draft", tmp_path / "nope.gguf"), "not found")
    _expect_user_error(cli("chat", "--policy", "turbo"), "unknown policy 'turbo'")
    _expect_user_error(cli("chat", "--set", "k_max=0"), "k_max")
    _expect_user_error(cli("chat", "--model", models["llama"]), "chat needs a terminal")  # stdin is a pipe here
