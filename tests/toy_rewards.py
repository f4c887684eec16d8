"""Computable rewards for the toy router runs: the share of a response's characters drawn from
one of two disjoint letter sets (they conflict: one answer cannot be all of both)."""

FIRST, SECOND = set("abcdefghijklm"), set("nopqrstuvwxyz")


def _share(responses, letters):
    """Share of the non-space characters (the toy tokenizer decodes with spaces between tokens)."""
    chars = ["".join(r.split()) for r in responses]
    return [sum(ch in letters for ch in c) / max(1, len(c)) for c in chars]


def first_letters(prompts, responses):
    return _share(responses, FIRST)


def second_letters(prompts, responses):
    return _share(responses, SECOND)
