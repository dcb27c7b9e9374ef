"""Remote answer backends: OpenAI-compatible chat completions and the Anthropic Messages API.

Both share one `httpx.AsyncClient` (passed in), explicit connect/read timeouts, an overall
monotonic deadline, and retries with jittered exponential backoff on 429/5xx/transport errors that
honour ``Retry-After``; asking, parsing and the one repair round trip are `replies.ask_with_repair`.
Failures are the `replies.ProviderError` tree.

API keys are read from the environment at call time and never appear in logs or messages.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import anyio
import httpx
import structlog

from indexer.retrying import parse_retry_after
from server.answering.grounding.evidence import Evidence
from server.answering.prompts import Redactor
from server.answering.replies import (
    AnswerBackend,
    Completion,
    GeneratedAnswer,
    ProviderBadOutput,
    ProviderConfigError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    Usage,
    ask_with_repair,
    sendable_prompt,
)
from server.settings import ProviderSettings

log = structlog.get_logger(__name__)

_ERROR_BODY_CHARS = 300


def estimate_cost(usage: Usage, settings: ProviderSettings) -> float:
    """USD cost of `usage` at the configured prices."""
    return (
        usage.input_tokens * settings.price_per_mtok_in + usage.output_tokens * settings.price_per_mtok_out
    ) / 1_000_000


class _HttpBackend:
    """Deadline and retry logic shared by the two wire formats."""

    backend = ""
    path = ""

    def __init__(self, settings: ProviderSettings, client: httpx.AsyncClient, redact: Redactor) -> None:
        self.settings = settings
        self.client = client
        self.redact = redact

    # --- wire format (per subclass) -----------------------------------------------------------
    def _headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def _body(self, system: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, data: dict[str, Any]) -> Completion:
        raise NotImplementedError

    # --- shared flow --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        base = self.settings.base_url.rstrip("/")
        return f"{base}{self.path}" if base.endswith("/v1") else f"{base}/v1{self.path}"

    def _api_key(self) -> str | None:
        name = self.settings.api_key_env
        if name is None:
            return None
        key = os.environ.get(name, "").strip()
        if not key:
            raise ProviderConfigError(
                f"the {self.backend} backend needs an API key: set the environment variable {name}"
            )
        return key

    async def generate(
        self, question: str, evidence: list[Evidence], *, max_output_tokens: int, deadline: float
    ) -> GeneratedAnswer:
        deadline = min(deadline, time.monotonic() + self.settings.deadline_s)
        prompt = sendable_prompt(question, evidence, self.redact)
        key = self._api_key()

        async def ask(system: str, messages: list[dict[str, str]]) -> Completion:
            return await self._complete(system, messages, max_output_tokens, deadline, key)

        return await ask_with_repair(
            ask,
            prompt,
            backend=self.backend,
            speaker=f"{self.backend} model {self.settings.model}",
            hint=". Try a model that follows JSON instructions or raise max_output_tokens if replies are cut off.",
        )

    def _scrub(self, text: str, key: str | None) -> str:
        # Some providers echo (part of) the key in 401 bodies: never pass it on.
        return text.replace(key, "***") if key else text

    async def _complete(
        self,
        system: str,
        messages: list[dict[str, str]],
        max_tokens: int,
        deadline: float,
        key: str | None,
    ) -> Completion:
        """One model call with retries; returns the reply text and usage."""
        body = self._body(system, messages, max_tokens)
        headers = self._headers(key)
        s = self.settings
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout()
            started = time.monotonic()
            retry_after: float | None = None
            # The per-attempt timeouts never exceed what is left of the deadline; fail_after also
            # bounds a server that trickles bytes slower than the read timeout notices.
            timeout = httpx.Timeout(
                connect=min(s.connect_timeout_s, remaining),
                read=min(s.timeout_s, remaining),
                write=min(s.timeout_s, remaining),
                pool=min(s.connect_timeout_s, remaining),
            )
            try:
                with anyio.fail_after(remaining):
                    response = await self.client.post(self.url, json=body, headers=headers, timeout=timeout)
            except TimeoutError:
                raise self._timeout() from None
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__} talking to {self.url}"
            else:
                elapsed_ms = round((time.monotonic() - started) * 1000)
                log.info(
                    "provider_response",
                    backend=self.backend,
                    model=s.model,
                    status=response.status_code,
                    attempt=attempt + 1,
                    elapsed_ms=elapsed_ms,
                )
                if response.status_code == 200:
                    return self._completion(response, key)
                if response.status_code != 429 and response.status_code < 500:
                    raise self._rejected(response, key)
                reason = f"HTTP {response.status_code}"
                retry_after = parse_retry_after(response.headers.get("retry-after"))

            if time.monotonic() >= deadline:
                raise self._timeout()
            if attempt >= s.max_retries:
                raise ProviderUnavailable(
                    f"{self.backend} at {self.url} failed {attempt + 1} times (last: {reason}); "
                    "check the provider's status or raise max_retries"
                )
            delay = min(s.backoff_max_s, s.backoff_base_s * 2**attempt) * random.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, retry_after)
            left = deadline - time.monotonic()
            if delay >= left:
                if retry_after is not None and retry_after >= left:
                    raise ProviderUnavailable(
                        f"{self.backend} asked to retry after {retry_after:.1f}s ({reason}), "
                        f"beyond the {left:.1f}s left of the deadline; try again later",
                        retry_after_s=retry_after,
                    )
                raise self._timeout()
            log.info(
                "provider_retry",
                backend=self.backend,
                model=s.model,
                attempt=attempt + 1,
                reason=reason,
                delay_s=round(delay, 3),
            )
            await anyio.sleep(delay)
            attempt += 1

    def _timeout(self) -> ProviderTimeout:
        return ProviderTimeout(
            f"{self.backend} model {self.settings.model} did not answer within the deadline "
            f"(at most {self.settings.deadline_s:g}s); raise deadline_s or use a faster model"
        )

    def _rejected(self, response: httpx.Response, key: str | None) -> ProviderRejected:
        status = response.status_code
        detail = self._scrub(response.text[:_ERROR_BODY_CHARS], key)
        if status in (401, 403):
            hint = f"check the API key in the environment variable {self.settings.api_key_env}"
        elif status == 404:
            hint = f"check base_url ({self.settings.base_url}) and the model name ({self.settings.model})"
        else:
            hint = "the request was refused; see the provider's message"
        return ProviderRejected(
            f"{self.backend} returned HTTP {status}: {hint}. Provider said: {detail}", status
        )

    def _completion(self, response: httpx.Response, key: str | None) -> Completion:
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError("not an object")
            return self._parse(data)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            detail = self._scrub(response.text[:_ERROR_BODY_CHARS], key)
            raise ProviderBadOutput(
                f"{self.backend} at {self.url} answered 200 with an unexpected body ({exc}); "
                f"is base_url pointing at a {self.backend}-compatible API? Body starts: {detail}"
            ) from None


class OpenAIChatBackend(_HttpBackend):
    """Any OpenAI-compatible `/v1/chat/completions` server: OpenAI, vLLM, Ollama."""

    backend = "openai"
    path = "/chat/completions"

    def _headers(self, key: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"} if key else {}

    def _body(self, system: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "messages": [{"role": "system", "content": system}, *messages],
            "response_format": {"type": "json_object"},
            "temperature": self.settings.temperature,
            self.settings.max_tokens_field: max_tokens,
        }

    def _parse(self, data: dict[str, Any]) -> Completion:
        message = data["choices"][0]["message"]
        usage = data.get("usage") or {}
        return Completion(
            text=message.get("content") or "",
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", 0)),
                output_tokens=int(usage.get("completion_tokens", 0)),
            ),
            model=str(data.get("model") or self.settings.model),
        )


class AnthropicMessagesBackend(_HttpBackend):
    """Anthropic's `/v1/messages`."""

    backend = "anthropic"
    path = "/messages"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": self.settings.anthropic_version}
        if key:
            headers["x-api-key"] = key
        return headers

    def _body(self, system: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "system": system,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": self.settings.temperature,
        }

    def _parse(self, data: dict[str, Any]) -> Completion:
        blocks = data["content"]
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text")
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            usage=Usage(
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
            ),
            model=str(data.get("model") or self.settings.model),
        )


def make_backend(settings: ProviderSettings, client: httpx.AsyncClient, redact: Redactor) -> AnswerBackend:
    """The backend for `settings.kind`."""
    if settings.kind == "anthropic":
        return AnthropicMessagesBackend(settings, client, redact)
    return OpenAIChatBackend(settings, client, redact)
