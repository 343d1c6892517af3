"""OpenAI (and any OpenAI-compatible endpoint), Anthropic and Ollama, through their official
SDKs (the `ai` extra: pip install 'pvebalance[ai]').

Each provider gets the same instructions, the same summary and the same answer schema, asked
for in its own structured-output form: OpenAI `response_format` json_schema, Anthropic a
forced tool call whose input schema is the answer schema, Ollama `format`. Every failure is
an `AdvisorError` with one line and a `kind` for the metrics; the API key never appears in
one (the SDKs do not echo it, and `_scrub` makes sure).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pveapi.errors import PvebalanceError

from .answer import ANSWER_SCHEMA, SCHEMA_NAME
from .settings import OLLAMA_DEFAULT_URL, AdvisorSettings

MAX_OLLAMA_BACKOFF = 60.0  # the longest Retry-After honoured, like the OpenAI and Anthropic SDKs
TOOL_NAME = "submit_moves"


class AdvisorError(PvebalanceError):
    """The provider gave no usable answer; `kind` is the metrics label."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Reply:
    answer: str | dict[str, Any]  # the JSON text, or the tool input already decoded
    input_tokens: int
    output_tokens: int


def ask(settings: AdvisorSettings, system: str, user: str) -> Reply:
    """One question to the configured provider; AdvisorError on anything but an answer."""
    call = _PROVIDERS[settings.provider]
    try:
        return call(settings, system, user)
    except AdvisorError as exc:
        raise AdvisorError(_scrub(f"{settings.where}: {exc}", settings), exc.kind) from None
    except ImportError:
        raise AdvisorError(
            f"{settings.where}: the {settings.provider} SDK is not installed; pip install 'pvebalance[ai]'", "error"
        ) from None


def _openai(settings: AdvisorSettings, system: str, user: str) -> Reply:
    import openai

    # A local OpenAI-compatible server may want no key; the SDK insists on one.
    client = openai.OpenAI(
        api_key=settings.api_key.reveal() if settings.api_key else "none", base_url=settings.base_url,
        timeout=settings.timeout, max_retries=settings.retries,
    )
    with _translated(openai, settings):
        response = client.chat.completions.create(
            model=settings.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            response_format={"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": ANSWER_SCHEMA}},
            max_completion_tokens=settings.max_tokens,
        )
    if not response.choices:
        raise AdvisorError("the answer has no choices", "malformed")
    choice = response.choices[0]
    if choice.message.refusal:
        raise AdvisorError(f"the model refused: {choice.message.refusal[:200]}", "refused")
    _check_finish(choice.finish_reason, settings, length="length", refusal="content_filter")
    usage = response.usage
    return Reply(choice.message.content or "", usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0)


def _anthropic(settings: AdvisorSettings, system: str, user: str) -> Reply:
    import anthropic

    client = anthropic.Anthropic(
        api_key=settings.api_key.reveal() if settings.api_key else None, base_url=settings.base_url,
        timeout=settings.timeout, max_retries=settings.retries,
    )
    with _translated(anthropic, settings):
        message = client.messages.create(
            model=settings.model,
            max_tokens=settings.max_tokens,
            system=system,
            messages=[{"role": "user", "content": user}],
            tools=[{"name": TOOL_NAME, "description": "Submit the suggested migrations", "input_schema": ANSWER_SCHEMA}],
            tool_choice={"type": "tool", "name": TOOL_NAME},
        )
    _check_finish(message.stop_reason, settings, length="max_tokens", refusal="refusal")
    tool = next((b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME), None)
    # Some compatible proxies ignore tool_choice and answer in text: read the JSON from it.
    answer: str | dict[str, Any] = (
        dict(tool.input) if tool is not None and isinstance(tool.input, dict)
        else "".join(b.text for b in message.content if b.type == "text")
    )
    return Reply(answer, message.usage.input_tokens, message.usage.output_tokens)


@contextlib.contextmanager
def _translated(sdk: Any, settings: AdvisorSettings) -> Iterator[None]:
    """The OpenAI and Anthropic SDKs' errors (the same names in both) as one AdvisorError."""
    try:
        yield
    except sdk.APITimeoutError:
        raise _timed_out(settings) from None
    except sdk.APIStatusError as exc:
        raise _status_error(exc.status_code, _error_message(exc.body) or exc.message) from None
    except sdk.APIConnectionError as exc:
        raise AdvisorError(f"cannot connect ({exc.__cause__ or exc})", "unreachable") from None


def _ollama(settings: AdvisorSettings, system: str, user: str) -> Reply:
    import httpx
    import ollama

    retry_after: list[float | None] = [None]
    headers = {"authorization": f"Bearer {settings.api_key.reveal()}"} if settings.api_key else None
    client = ollama.Client(
        host=settings.base_url or OLLAMA_DEFAULT_URL, timeout=settings.timeout, headers=headers,
        # The SDK neither retries nor exposes headers: keep Retry-After from each response.
        event_hooks={"response": [lambda r: retry_after.__setitem__(0, _seconds(r.headers.get("retry-after")))]},
    )

    def chat() -> Any:
        return client.chat(
            model=settings.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            format=ANSWER_SCHEMA, options={"num_predict": settings.max_tokens}, stream=False,
        )

    try:
        response = _with_retries(chat, settings.retries, lambda exc: _ollama_retry_in(exc, retry_after[0]))
    except httpx.TimeoutException:
        raise _timed_out(settings) from None
    except ollama.ResponseError as exc:
        raise _status_error(exc.status_code, str(exc.error)) from None
    except (ConnectionError, httpx.TransportError) as exc:
        raise AdvisorError(f"cannot connect ({exc})", "unreachable") from None
    _check_finish(response.done_reason, settings, length="length", refusal=None)
    return Reply(response.message.content or "", response.prompt_eval_count or 0, response.eval_count or 0)


def _ollama_retry_in(exc: Exception, retry_after: float | None) -> float | None:
    """Seconds to wait before asking Ollama again, None when `exc` is not worth a retry."""
    import httpx
    import ollama

    if isinstance(exc, ollama.ResponseError) and (exc.status_code == 429 or exc.status_code >= 500):
        return retry_after if retry_after is not None else 1.0
    if isinstance(exc, httpx.TimeoutException):
        return 0.0
    return None


def _with_retries(call: Callable[[], Any], retries: int, retry_in: Callable[[Exception], float | None]) -> Any:
    attempt = 0
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - retry_in decides; anything else is re-raised
            wait = retry_in(exc)
            if wait is None or attempt == retries or wait > MAX_OLLAMA_BACKOFF:
                raise
        attempt += 1
        time.sleep(wait)


def _seconds(header: str | None) -> float | None:
    try:
        value = float(header) if header is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < float("inf") else None


def _check_finish(reason: str | None, settings: AdvisorSettings, length: str, refusal: str | None) -> None:
    if reason == length:
        raise AdvisorError(
            f"the answer was cut off at the token budget (ai.max_tokens: {settings.max_tokens}); raise it", "truncated"
        )
    if refusal is not None and reason == refusal:
        raise AdvisorError("the model refused to answer", "refused")


def _timed_out(settings: AdvisorSettings) -> AdvisorError:
    tries = f" ({settings.retries + 1} tries)" if settings.retries else ""
    return AdvisorError(f"no answer within {settings.timeout:g}s{tries}; raise ai.timeout or try again later", "timeout")


def _status_error(status: int, message: str) -> AdvisorError:
    text = " ".join(str(message).split())[:200]
    if status == 429:
        return AdvisorError(f"rate limited (HTTP 429) after the configured retries: {text}; try again later", "rate_limited")
    if status in (401, 403):
        return AdvisorError(f"the API key was refused (HTTP {status}): {text}; check ai.api_key_file", "auth")
    return AdvisorError(f"HTTP {status}: {text}", "error")


def _error_message(body: Any) -> str | None:
    """The provider's own error sentence from its JSON error body, when it has one."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error))
    return str(error) if error is not None else None


def _scrub(message: str, settings: AdvisorSettings) -> str:
    key = settings.api_key.reveal() if settings.api_key else ""
    return message.replace(key, "***") if len(key) >= 4 else message


_PROVIDERS: dict[str, Callable[[AdvisorSettings, str, str], Reply]] = {
    "openai": _openai, "anthropic": _anthropic, "ollama": _ollama,
}
