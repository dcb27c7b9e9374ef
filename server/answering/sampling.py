"""MCP sampling as an answer backend: the connected client's own model writes the answer.

No MCP in here: the model is reached through a plain `SampleFn` callback that the tool handler
builds from its request context.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
from pydantic import BaseModel

from server.answering.grounding.evidence import Evidence
from server.answering.replies import (
    Completion,
    GeneratedAnswer,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    ask_with_repair,
    sendable_prompt,
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
        prompt = sendable_prompt(question, evidence, guards.redact)

        async def ask(system: str, messages: list[dict[str, str]]) -> Completion:
            reply = await self._ask(system, messages, max_output_tokens, deadline)
            return Completion(
                text=reply.text, usage=self._usage(system, messages, reply.text), model=reply.model
            )

        return await ask_with_repair(ask, prompt, backend=self.backend, speaker="the client's model")

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
