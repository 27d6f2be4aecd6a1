"""Episode text <-> tokens: the first messages, and each environment answer, tokenized once.

The model's turns are never re-tokenized: the trainer keeps the ids the sampler drew. What this
module tokenizes is only what the environment adds between two model turns, and it does so by
difference of chat-template renderings, so that the episode's tokens are what the template would
have produced for the whole conversation (up to the model's own tokens):

    close  = what the template writes after an assistant message's content (e.g. "<|im_end|>\\n")
    answer = render(dummy + env messages, add_generation_prompt=True) - render(dummy)

The tokens appended after a model turn are ``close`` (less the EOS text the model already sampled,
when the turn ended with it) followed by ``answer``, tokenized in one call without special tokens
added. Where a template does not begin a message at a token boundary the sequence still holds
exactly the sampled ids and the environment's text tokenized once; the tokens may differ from a
re-tokenization of the whole decoded conversation, which is the point (no retokenization drift).

Tool messages: a chat template whose source mentions a ``tool`` role renders them as such. Others
(SmolLM2's: it would print any role, but the model never saw one named 'tool') get the *tagged*
format: a tool message becomes a ``user`` message whose content is wrapped in ``<output>`` ...
``</output>``. Without a chat template (``chat: no``), the conversation is plain text: the first
messages' contents joined by blank lines, and each environment answer as ``\\n<output>\\n...\\n</output>\\n``
(tool) or ``\\n...\\n`` (user), after the model turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gspo.environments.base import Message

_DUMMY_USER = "Q"
_DUMMY_REPLY = "R7x"


def tagged(content: str) -> str:
    """A tool result in the tagged format."""
    return f"<output>\n{content}\n</output>"


class TurnFormat:
    """Tokenizes an episode's first messages and each environment answer for one tokenizer.

    ``chat``: use the chat template (the run's ``chat`` setting resolved); ``tool_role``: None
    detects it from the template ('tool' in its source).
    """

    def __init__(self, tokenizer, *, chat: bool, tool_role: bool | None = None):
        self.tokenizer = tokenizer
        self.chat = chat and bool(getattr(tokenizer, "chat_template", None))
        template = str(getattr(tokenizer, "chat_template", "") or "")
        self.tool_role = ("tool" in template) if tool_role is None else tool_role
        self._close = self._closing_text() if self.chat else ""

    # -------------------------------------------------------------------------------------- text
    def _render(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=generation_prompt
        )

    def _closing_text(self) -> str:
        text = self._render(
            [{"role": "user", "content": _DUMMY_USER}, {"role": "assistant", "content": _DUMMY_REPLY}], False
        )
        at = text.rfind(_DUMMY_REPLY)
        return text[at + len(_DUMMY_REPLY) :] if at >= 0 else ""

    def _as_template_messages(self, messages: Sequence[Message]) -> list[Message]:
        out = []
        for m in messages:
            if m["role"] == "tool" and not self.tool_role:
                out.append({"role": "user", "content": tagged(m["content"])})
            else:
                out.append(dict(m))
        return out

    def first_text(self, messages: Sequence[Message]) -> str:
        """The prompt text of the episode's first messages (generation prompt included)."""
        if self.chat:
            return self._render(self._as_template_messages(messages), True)
        return "\n\n".join(m["content"] for m in messages)

    def answer_text(self, messages: Sequence[Message], *, sampled_eos_text: str | None) -> str:
        """The text appended after a model turn: the template's close of that turn, the environment's
        messages and the next generation prompt. ``sampled_eos_text``: the EOS token's text when the
        turn ended with one (it is in the sequence already), else None."""
        if not self.chat:
            body = "".join(
                f"\n{tagged(m['content'])}\n" if m["role"] == "tool" else f"\n{m['content']}\n" for m in messages
            )
            return body
        base = [{"role": "user", "content": _DUMMY_USER}, {"role": "assistant", "content": _DUMMY_REPLY}]
        before = self._render(base, False)
        after = self._render(base + self._as_template_messages(messages), True)
        if not after.startswith(before):
            raise ValueError("the chat template does not render a conversation as a prefix of its continuation")
        close = self._close
        if sampled_eos_text and close.startswith(sampled_eos_text):
            close = close[len(sampled_eos_text) :]
        return close + after[len(before) :]

    # -------------------------------------------------------------------------------------- tokens
    def first_ids(self, messages: Sequence[Message]) -> list[int]:
        text = self.first_text(messages)
        ids = self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]
        if not ids:
            raise ValueError("the episode's first messages encode to zero tokens")
        return list(ids)

    def answer_ids(self, messages: Sequence[Message], *, sampled_eos_id: int | None) -> list[int]:
        eos_text = None if sampled_eos_id is None else self.tokenizer.decode([sampled_eos_id])
        text = self.answer_text(messages, sampled_eos_text=eos_text)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def describe(self) -> dict[str, Any]:
        return {"chat": self.chat, "tool_role": self.tool_role, "close": self._close}
