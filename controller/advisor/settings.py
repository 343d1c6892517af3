"""The `ai:` config block. No block: no advisor. The API key comes from a file or the
environment (pveapi.settings.read_secret) and is kept as a `Secret`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pveapi import values
from pveapi.errors import ConfigError
from pveapi.settings import Secret, read_secret

Provider = Literal["openai", "anthropic", "ollama"]
# The environment variable each provider's own tools use for the key: read when no key is configured.
KEY_ENV: dict[str, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "ollama": "OLLAMA_API_KEY"}
OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434"
MAX_SUGGESTIONS_LIMIT = 50

_KEYS = {
    "provider", "model", "base_url", "api_key", "api_key_file", "api_key_env", "timeout", "retries",
    "window", "max_tokens", "max_suggestions", "max_guests", "anonymize_names",
}


@dataclass(frozen=True)
class AdvisorSettings:
    provider: Provider
    model: str
    base_url: str | None = None  # an OpenAI-compatible endpoint, an Anthropic proxy, the Ollama host
    api_key: Secret | None = field(default=None, repr=False)
    timeout: float = 60.0  # seconds per request
    retries: int = 2  # on a rate limit (429, honouring Retry-After), a timeout or a 5xx
    window: str | None = None  # history window for the advice; None: prometheus.window
    max_tokens: int = 2000  # the answer's token budget
    max_suggestions: int = 10  # moves read from an answer; more are rejected unread
    max_guests: int = 200  # guests listed in the summary (largest first)
    anonymize_names: bool = True  # guest names stay here: the model sees VMIDs only

    @property
    def where(self) -> str:
        """How errors name the advisor: provider, model and endpoint, never the key."""
        return f"ai advisor ({self.provider} {self.model}{' at ' + self.base_url if self.base_url else ''})"


def parse_advisor(data: Any, where: str, env: Mapping[str, str], windows: tuple[str, ...]) -> AdvisorSettings | None:
    if data is None:
        return None
    block = values.mapping(data, where)
    values.reject_unknown(block, _KEYS, where)
    provider = block.get("provider")
    if provider not in KEY_ENV:
        raise ConfigError(f"{where}.provider: expected openai, anthropic or ollama, got {provider!r}")
    model = block.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{where}.model: required, the provider's model name (e.g. gpt-4.1-mini, claude-sonnet-4-5, llama3.1)")
    base_url = block.get("base_url")
    if base_url is not None and (not isinstance(base_url, str) or not re.match(r"^https?://[^/\s]+", base_url)):
        raise ConfigError(f"{where}.base_url: expected http(s)://host[:port][/path], got {base_url!r}")
    api_key = read_secret(block, "api_key", where, env, KEY_ENV[provider])
    needs_key = provider == "anthropic" or (provider == "openai" and base_url is None)  # a local endpoint may not
    if api_key is None and needs_key:
        raise ConfigError(
            f"{where}: no API key for {provider}; set api_key_file or api_key_env (or {KEY_ENV[provider]})"
        )
    window = block.get("window")
    if window is not None and window not in windows:
        raise ConfigError(f"{where}.window: must be one of {', '.join(windows)}, got {window!r}")
    d = AdvisorSettings(provider, model)
    return AdvisorSettings(
        provider=provider,
        model=model.strip(),
        base_url=base_url.rstrip("/") if base_url is not None else None,
        api_key=api_key,
        timeout=values.number(block.get("timeout", d.timeout), f"{where}.timeout", 0.001, 3600),
        retries=values.count(block.get("retries", d.retries), f"{where}.retries"),
        window=window,
        max_tokens=values.count(block.get("max_tokens", d.max_tokens), f"{where}.max_tokens", low=64),
        max_suggestions=_at_most(
            values.count(block.get("max_suggestions", d.max_suggestions), f"{where}.max_suggestions", low=1),
            MAX_SUGGESTIONS_LIMIT, f"{where}.max_suggestions",
        ),
        max_guests=values.count(block.get("max_guests", d.max_guests), f"{where}.max_guests", low=1),
        anonymize_names=values.flag(block.get("anonymize_names", d.anonymize_names), f"{where}.anonymize_names"),
    )


def _at_most(value: int, limit: int, where: str) -> int:
    if value > limit:
        raise ConfigError(f"{where}: at most {limit} (each suggestion is checked against the whole cluster), got {value}")
    return value
