"""The reply contract every model-backed answer backend shares, and its one ask → parse → repair flow.

A backend (OpenAI or Anthropic over HTTP, or the MCP client's own model through sampling) only
says how to put one question to its model; asking, parsing the JSON reply and the single repair
round trip when that reply is unusable happen here, the same way for all of them.

Errors (all `ProviderError`):
    ProviderConfigError   the settings cannot work (API key variable unset)
    ProviderRejected      the provider refused the request (4xx other than 429): key, model, quota
    ProviderTimeout       the overall deadline passed
    ProviderUnavailable   retries exhausted, or the provider asked to wait past the deadline
    ProviderBadOutput     the reply was not the JSON we asked for, even after one repair request
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog
from pydantic import BaseModel, Field, ValidationError, model_validator

from server.answering.grounding.evidence import Evidence
from server.answering.prompts import Prompt, Redactor, build_prompt, repair_request

log = structlog.get_logger(__name__)

# A runaway first reply is echoed back only this far: the model needs to see what it sent, not
# pay for all of it a second time.
_REPAIR_ECHO_CHARS = 8000


class ProviderError(Exception):
    """Base of every answer-backend failure."""


class ProviderConfigError(ProviderError):
    pass


class ProviderRejected(ProviderError):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ProviderTimeout(ProviderError):
    pass


class ProviderUnavailable(ProviderError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ProviderBadOutput(ProviderError):
    pass


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Citation(BaseModel):
    n: int = Field(ge=1)
    chunk_id: str | None = None


class ModelReply(BaseModel):
    """The JSON object the model must return (see prompts.REPLY_SCHEMA)."""

    answer: str
    citations: list[Citation] = Field(default_factory=list)
    insufficient: bool = False

    @model_validator(mode="after")
    def _answer_present(self) -> ModelReply:
        if not self.answer.strip() and not self.insufficient:
            raise ValueError('"answer" is empty; write the answer or set "insufficient" to true')
        return self


class GeneratedAnswer(BaseModel):
    answer: str = Field(description="Answer text with inline [n] markers referring to evidence numbers.")
    citations: list[Citation]
    insufficient: bool = False
    usage: Usage
    model: str
    backend: str
    repaired: bool = Field(default=False, description="True when a repair request was needed.")


class AnswerBackend(Protocol):
    async def generate(
        self, question: str, evidence: list[Evidence], *, max_output_tokens: int, deadline: float
    ) -> GeneratedAnswer:
        """Answer from `evidence`; `deadline` is an absolute `time.monotonic()` instant."""
        ...


class Completion(BaseModel):
    """One model reply: its text, the tokens it cost, and the model that wrote it."""

    text: str
    usage: Usage
    model: str


Ask = Callable[[str, list[dict[str, str]]], Awaitable[Completion]]
"""(system prompt, messages) → the model's reply to that conversation."""


def parse_reply(text: str) -> ModelReply:
    """Parse the model's JSON reply, tolerating a code fence or prose around the object."""
    candidate = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", candidate, re.DOTALL)
    if fenced:
        candidate = fenced.group(1)
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError as exc:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end <= start:
            raise ValueError(f"the reply is not JSON ({exc.msg} at position {exc.pos})") from None
        try:
            data = json.loads(candidate[start : end + 1])
        except json.JSONDecodeError as inner:
            raise ValueError(f"the reply is not valid JSON ({inner.msg} at position {inner.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the reply is JSON but not an object")
    try:
        return ModelReply.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'reply'}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"the JSON does not match the schema ({problems})") from None


def sendable_prompt(question: str, evidence: list[Evidence], redact: Redactor) -> Prompt:
    """The prompt for `question`, refused before any model call when every source was flagged."""
    prompt = build_prompt(question, evidence, redact)
    if not prompt.sources:
        raise ProviderError("no evidence is left to send once flagged sources are excluded; abstain instead")
    return prompt


async def ask_with_repair(
    ask: Ask, prompt: Prompt, *, backend: str, speaker: str, hint: str = ""
) -> GeneratedAnswer:
    """Ask once; when the reply is unusable, show the model its reply and the problem, and ask again.

    Only one repair round trip: a model that fails twice will not follow the contract, and each
    try costs tokens and deadline. `speaker` names the model in the error ("openai model gpt-x");
    `hint` is what the operator can do about it.
    """
    messages = [{"role": "user", "content": prompt.user}]
    first = await ask(prompt.system, messages)
    try:
        reply = parse_reply(first.text)
    except ValueError as exc:
        error = str(exc)
    else:
        return _answer(reply, first.usage, first.model, backend, repaired=False)
    log.warning("provider_reply_invalid", backend=backend, model=first.model, error=error)
    messages = [
        *messages,
        {"role": "assistant", "content": first.text[:_REPAIR_ECHO_CHARS] or "(empty reply)"},
        {"role": "user", "content": repair_request(error)},
    ]
    second = await ask(prompt.system, messages)
    try:
        reply = parse_reply(second.text)
    except ValueError as exc:
        raise ProviderBadOutput(
            f"{speaker} did not return the required JSON after one repair request: {exc}{hint}"
        ) from None
    return _answer(reply, first.usage + second.usage, second.model, backend, repaired=True)


def _answer(reply: ModelReply, usage: Usage, model: str, backend: str, *, repaired: bool) -> GeneratedAnswer:
    # The reply's own fields, plus what it cost and who wrote it.
    return GeneratedAnswer(**reply.model_dump(), usage=usage, model=model, backend=backend, repaired=repaired)
