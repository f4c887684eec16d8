"""Settings of `hoe generate`: checked in full, the context window included, before a weight loads."""

from __future__ import annotations

from pydantic import Field

from hoe.errors import HoEError
from hoe.settings import Settings, flag_name


class GenerateSettings(Settings):
    """How a batch of requests is answered; what a resumed run must share with the one it continues."""

    max_new_tokens: int = Field(128, gt=0, description="Tokens to generate.")
    do_sample: bool = Field(False, description="Sample (with temperature and top_p) or decode greedily.")
    temperature: float = Field(0.7, gt=0, allow_inf_nan=False, description="Sampling temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass.")
    seed: int = Field(0, description="Seed for sampling (batch k uses seed + k).")
    batch_size: int = Field(8, gt=0, description="Prompts per batch; rows may carry different preferences.")

    def generate_options(self) -> dict:
        """The keyword arguments of ``HoEModel.generate``: sampling knobs only when sampling."""
        options: dict = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            options.update(temperature=self.temperature, top_p=self.top_p)
        return options

    def check_context(self, context: int | None) -> None:
        """Refuse more new tokens than the model's context window holds: such a run would only stop when killed."""
        if context is not None and self.max_new_tokens >= context:
            raise HoEError(
                f"{flag_name('max_new_tokens')} must be below the model's context of {context} tokens, "
                f"got {self.max_new_tokens}"
            )
