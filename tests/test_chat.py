"""Multi-turn chat prompts: a GGUF's chat template when it has one, plain continuation otherwise;
and chat on real llama.cpp for the factory's MoE of every architecture."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

import backends.llamacpp  # noqa: F401  (llama.cpp before numpy)
from cascade_tui.engine import GenerationConfig
from cascade_tui.factory import ARCHS, write_model
from cascade_tui.runtime import ModelOptions
from cascade_tui.session import read_session
from cascade_tui.session.chat import Conversation, TemplateError
from cascade_tui.session.core import RecordOptions, Session
from cascade_tui.session.host import open_session
from test_cli import models  # noqa: F401  (the factory MoE of every arch, each with an f16 copy to draft)

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_plain_continuation_appends_each_message_to_the_text_so_far():
    c = Conversation()
    assert c.mode == "continuation"
    assert c.prompt_for("def f(x):") == "def f(x):"
    c.add_turn("def f(x):", "\n    return x")
    assert c.prompt_for("def g(y):") == "def f(x):\n    return x\ndef g(y):"  # a newline between
    c.add_turn("def g(y):", " ")
    assert c.prompt_for("z") == "def f(x):\n    return x\ndef g(y): z"  # after whitespace: none
    c.clear()
    assert c.prompt_for("a") == "a"


def test_a_template_renders_the_whole_conversation_with_a_generation_prompt():
    c = Conversation(template="{{ bos_token }}" + CHATML, bos_text="<s>", eos_text="</s>")
    assert c.mode == "template"
    first = c.prompt_for("hi")
    assert first == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"  # BOS left to the tokenizer
    c.add_turn("hi", "hello")
    second = c.prompt_for("and you?")
    assert second.startswith(first + "hello<|im_end|>\n")  # the earlier turns are a prefix: cache reuse
    assert second.endswith("<|im_start|>user\nand you?<|im_end|>\n<|im_start|>assistant\n")


def test_a_broken_template_is_one_clear_error():
    with pytest.raises(TemplateError, match="chat template failed: TemplateSyntaxError"):
        Conversation(template="{% for m in messages %}").prompt_for("x")
    with pytest.raises(TemplateError, match="only user and assistant"):
        Conversation(template="{{ raise_exception('only user and assistant') }}").prompt_for("x")


def test_a_gguf_chat_template_reaches_the_conversation_and_turns_reuse_the_cache(tmp_path):
    target = write_model(tmp_path / "chat.gguf", arch="qwen3moe", n_layer=2, n_embd=64, n_head=4, n_ff=96,
                         n_expert=8, n_expert_used=2, seed=4, chat_template=CHATML)
    rec = tmp_path / "c.cascade.jsonl"
    s = Session.open(ModelOptions(model=str(target), draft="ngram", threads=1, ctx=512), policy="static:2",
                     generation=GenerationConfig(max_tokens=12), record=RecordOptions(path=rec))
    chat = Conversation.for_model(s.models.target.info.extra)
    assert chat.mode == "template" and chat.template == CHATML
    for msg in ("hello", "tell me more"):
        events = list(s.turn(chat.prompt_for(msg), message=msg))
        chat.add_turn(msg, events[-1].text)
    s.close()
    turns = [e for e in read_session(rec).events if e.type == "turn"]
    assert [t.message for t in turns] == ["hello", "tell me more"]
    assert turns[1].reused_tokens >= turns[0].prompt_tokens  # the first turn stayed in the cache


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_runs_on_the_factory_moe_of_every_architecture(models, arch, tmp_path):
    """`cascade-tui chat --model X.gguf --draft Y.gguf`: the TUI over real llama.cpp, two turns."""
    from cascade_tui.tui.app import CascadeApp
    from cascade_tui.tui.sources import LiveSource
    from test_tui import ask, until

    target, draft = models[arch], models[f"{arch}-f16"]
    rec = tmp_path / "a.cascade.jsonl"
    opener = partial(open_session, ModelOptions(model=str(target), draft=str(draft), threads=1, ctx=512), "static:3",
                     {}, GenerationConfig(max_tokens=16), RecordOptions(path=rec), ["chat"])

    async def go():
        src = LiveSource(opener, mode="thread")
        app = CascadeApp(src)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: src.ready, 60, "the models")
            await ask(pilot, app, "def f(x):")
            await ask(pilot, app, "class A:")
            st = app.main.state
            assert [t.tokens for t in st.chat] == [16, 16]
            assert st.heat_now is not None and st.heat_now.shape == (len(st.header["model"]["moe_layers"]), 8)
            assert st.total.drafted > 0
        src.close()

    asyncio.run(go())
    ev = read_session(rec).events
    assert [e.type for e in ev if e.type in ("turn", "end")] == ["turn", "end", "turn", "end"]
