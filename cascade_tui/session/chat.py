"""Turning a multi-turn chat into the prompt of each turn.

With a chat template (a GGUF's ``tokenizer.chat_template``, Jinja as in Hugging Face tokenizers)
the whole conversation is rendered each turn with ``add_generation_prompt``; without one the
chat is a plain continuation: each message is appended to the text so far (prompt, answers and
all). Either way the session's KV cache keeps the shared prefix, so only new tokens are
evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TemplateError(Exception):
    """The model's chat template cannot be rendered. One line."""


@dataclass
class Conversation:
    template: str | None = None
    bos_text: str = ""
    eos_text: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    _compiled: Any = field(default=None, repr=False)

    @classmethod
    def for_model(cls, info_extra: dict | None) -> Conversation:
        extra = info_extra or {}
        return cls(template=extra.get("chat_template"), bos_text=extra.get("bos_text", ""),
                   eos_text=extra.get("eos_text", ""))

    @property
    def mode(self) -> str:
        return "template" if self.template else "continuation"

    def prompt_for(self, message: str) -> str:
        """The full prompt for the next turn, ``message`` included (not yet added: call
        :meth:`add_turn` once the answer is known)."""
        if not self.template:
            text = "".join(m["content"] for m in self.messages)
            if text and not text[-1].isspace() and not message[:1].isspace():
                text += "\n"
            return text + message
        rendered = self._render(self.messages + [{"role": "user", "content": message}])
        if self.bos_text and rendered.startswith(self.bos_text):
            rendered = rendered[len(self.bos_text):]  # the tokenizer adds BOS itself
        return rendered

    def add_turn(self, message: str, answer: str) -> None:
        if not self.template:
            prefix = self.prompt_for(message)[len("".join(m["content"] for m in self.messages)):]
            self.messages.append({"role": "user", "content": prefix})
        else:
            self.messages.append({"role": "user", "content": message})
        self.messages.append({"role": "assistant", "content": answer})

    def clear(self) -> None:
        self.messages.clear()

    def _render(self, messages: list[dict[str, str]]) -> str:
        try:
            if self._compiled is None:
                from jinja2.sandbox import ImmutableSandboxedEnvironment

                env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

                def raise_exception(msg):
                    raise TemplateError(str(msg))

                env.globals["raise_exception"] = raise_exception
                self._compiled = env.from_string(self.template)
            return self._compiled.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self.bos_text, eos_token=self.eos_text)
        except TemplateError:
            raise
        except Exception as e:  # jinja2 syntax or runtime errors in a model's template
            raise TemplateError(f"the model's chat template failed: {type(e).__name__}: {e}") from None
