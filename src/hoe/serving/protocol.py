"""The OpenAI request bodies ``hoe serve`` accepts, plus HoE's one extra field, ``preference``.

A field the OpenAI API defines but this server cannot honour is accepted only at its neutral value
(``n`` = 1, no penalties, no logprobs), so a client never gets silently different behaviour; a field
no version of the API defines is refused, naming it. Everything here is checked before a request
reaches the model; errors become HTTP 400 in OpenAI's error format (see ``app``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hoe.errors import HoEError

SERVED_NAME = "hoe"
PreferenceBody = list[float] | dict[str, float] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class _Common(_Strict):
    """What chat and text completions share."""

    model: str = SERVED_NAME
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    preference: PreferenceBody = None
    # defined by the API, honoured only at their neutral values
    frequency_penalty: Literal[0] = 0
    presence_penalty: Literal[0] = 0
    logprobs: Literal[False] | None = None
    # carried for the caller's bookkeeping; they change nothing
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    def stops(self) -> list[str]:
        return list(self.stop or [])

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)

    def chat(self) -> list[dict]:
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class CompletionRequest(_Common):
    prompt: str | list[str]
    echo: Literal[False] = False
    suffix: None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        prompts = [value] if isinstance(value, str) else value
        if len(prompts) != 1:
            raise ValueError("give one prompt per request (n prompts: n requests, which batch together)")
        return prompts[0]


def preference_of(request: _Common, objectives: list[str]) -> PreferenceBody | str:
    """The request's λ as sent: the body's ``preference``, or the one ``model`` names
    (``hoe:helpful=0.7,harmless=0.3``), or None for the default. The model name must be the served one."""
    model = request.model
    if model != SERVED_NAME and not model.startswith(f"{SERVED_NAME}:"):
        raise ModelNotFound(f"model '{model}' is not served here; use '{SERVED_NAME}' or '{SERVED_NAME}:NAME=W,...'")
    named = model.removeprefix(f"{SERVED_NAME}:") if model != SERVED_NAME else None
    if named is not None and request.preference is not None:
        raise HoEError("the preference is given twice (in 'model' and in 'preference'); give it once")
    return request.preference if request.preference is not None else named


class ModelNotFound(HoEError):
    """A ``model`` other than the served one (HTTP 404, as OpenAI answers)."""
