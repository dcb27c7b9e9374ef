"""MCP sampling as an answer backend: the connected client's own model writes the answer.

No MCP in here: the model is reached through a plain `SampleFn` callback that the tool handler
builds from its request context.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from pydantic import BaseModel

from server.answering.grounding import Evidence
from server.answering.prompts import build_prompt, repair_request
from server.answering.providers import (
    GeneratedAnswer,
    ProviderBadOutput,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    parse_reply,
)
from server.security import guards


class SampledReply(BaseModel):
    text: str
    model: str


SampleFn = Callable[[str, list[dict[str, str]], int, float], Awaitable[SampledReply]]
"""(system prompt, messages, max output tokens, timeout seconds) → the client model's reply."""


class SamplingBackend:
    """Asks the connected MCP client's own model, with the same prompt and JSON contract as HTTP."""

    backend = "sampling"

    def __init__(self, sample: SampleFn, count_tokens: Callable[[str], int]) -> None:
        self.sample = sample
        self.count_tokens = count_tokens

    async def generate(
        self, question: str, evidence: list[Evidence], *, max_output_tokens: int, deadline: float
    ) -> GeneratedAnswer:
        prompt = build_prompt(question, evidence, guards.redact)
        if not prompt.sources:
            raise ProviderError("no evidence is left to send once flagged sources are excluded")
        messages = [{"role": "user", "content": prompt.user}]
        first = await self._ask(prompt.system, messages, max_output_tokens, deadline)
        usage = self._usage(prompt.system, messages, first.text)
        try:
            return self._answer(parse_reply(first.text), usage, first.model, repaired=False)
        except ValueError as exc:
            error = str(exc)
        messages = [
            *messages,
            {"role": "assistant", "content": first.text or "(empty reply)"},
            {"role": "user", "content": repair_request(error)},
        ]
        second = await self._ask(prompt.system, messages, max_output_tokens, deadline)
        usage = usage + self._usage(prompt.system, messages, second.text)
        try:
            reply = parse_reply(second.text)
        except ValueError as exc:
            raise ProviderBadOutput(
                f"the client's model did not return the required JSON after one repair request: {exc}"
            ) from None
        return self._answer(reply, usage, second.model, repaired=True)

    async def _ask(
        self, system: str, messages: list[dict[str, str]], max_tokens: int, deadline: float
    ) -> SampledReply:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderTimeout("the client's model did not answer within the deadline")
        try:
            with anyio.fail_after(remaining):
                return await self.sample(system, messages, max_tokens, remaining)
        except TimeoutError:
            raise ProviderTimeout("the client's model did not answer within the deadline") from None
        except ProviderError:
            raise
        except Exception as exc:  # the client may refuse or fail in any way; extractive answers instead
            raise ProviderUnavailable(
                f"the client's model could not answer ({type(exc).__name__}: {exc})"
            ) from exc

    def _usage(self, system: str, messages: list[dict[str, str]], reply: str) -> Usage:
        # Sampling replies carry no token counts: estimate with the local tokenizer.
        sent = self.count_tokens(system) + sum(self.count_tokens(m["content"]) for m in messages)
        return Usage(input_tokens=sent, output_tokens=self.count_tokens(reply))

    @staticmethod
    def _answer(reply: Any, usage: Usage, model: str, *, repaired: bool) -> GeneratedAnswer:
        return GeneratedAnswer(
            answer=reply.answer,
            citations=reply.citations,
            insufficient=reply.insufficient,
            usage=usage,
            model=model,
            backend="sampling",
            repaired=repaired,
        )
