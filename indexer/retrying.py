"""Retries for remote calls: 429/5xx and transport errors, jittered exponential backoff, Retry-After.

One policy for every remote service docgate talks to (embedding and rerank APIs, LLM providers).
A few lines of our own rather than a retry library: the delay must honour the server's
Retry-After (capped) and never outlast the caller's deadline, which is most of the logic anyway.
"""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, Field


class RetryPolicy(BaseModel):
    max_retries: int = Field(default=4, ge=0, le=20, description="Retries after the first attempt.")
    backoff_base_s: float = Field(
        default=0.5, ge=0.0, le=60.0, description="First backoff; doubles each retry."
    )
    backoff_max_s: float = Field(default=8.0, ge=0.0, le=600.0, description="Longest backoff between tries.")
    retry_after_cap_s: float = Field(
        default=30.0, ge=0.0, le=3600.0, description="Longest Retry-After honoured; longer ones give up."
    )


def retryable_status(status: int) -> bool:
    """Rate limited or a server-side failure: the same request may succeed later."""
    return status == 429 or status >= 500


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(policy: RetryPolicy, attempt: int, retry_after: float | None) -> float | None:
    """Seconds to wait before retry number `attempt + 1`, or None when the policy says stop.

    The server's Retry-After wins over a shorter backoff; one above the cap means give up now
    rather than hold a build or a request for minutes.
    """
    if attempt >= policy.max_retries:
        return None
    if retry_after is not None and retry_after > policy.retry_after_cap_s:
        return None
    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2.0**attempt) * random.uniform(0.5, 1.0)
    return max(delay, retry_after) if retry_after is not None else delay
