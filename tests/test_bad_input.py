"""Bad input, command by command: every case is one line naming the problem, exit 2, and nothing written.

Each row is (command line, the start of the one line it must print). ``{bundle}``, ``{expert}``, ``{base}``,
``{ft}``, ``{recipe}`` and ``{tmp}`` are filled from the tiny fixtures; ``{tmp}`` is a fresh folder per case,
and a case may first write files there (``SETUP``). Nothing but the set-up files may exist afterwards."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hoe.cli import app

runner = CliRunner()
BUNDLE: Path  # the tiny bundle, set by the ``places`` fixture before any set-up runs


def _text(name: str, text: str):
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)

    return setup


def _bytes(name: str, data: bytes):
    return lambda tmp: (tmp / name).write_bytes(data)


def _bundle_copy(edit):
    """A copy of the tiny bundle at {tmp}/b, changed by ``edit(folder)`` (a hostile or damaged bundle)."""

    def setup(tmp: Path) -> None:
        shutil.copytree(BUNDLE, tmp / "b")
        edit(tmp / "b")

    return setup


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _lower_rank_of_one_a(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "adapter_model.safetensors")
    key = next(k for k in weights if "lora_A" in k)
    weights[key] = weights[key][:1].contiguous()
    save_file(weights, folder / "adapter_model.safetensors")


class _Payload:
    """A pickle that, if anything unpickled it, would run a shell command writing ``pwned`` (the test
    then sees a file it did not set up)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.folder}/pwned",)


def _pickled_adapter(tmp: Path) -> None:
    """{tmp}/evil: the tiny helpful expert whose weights are a malicious ``adapter_model.bin``."""
    import pickle

    shutil.copytree(BUNDLE / "experts" / "helpful", tmp / "evil")
    (tmp / "evil" / "adapter_model.safetensors").unlink()
    (tmp / "evil" / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(tmp)))


def _rows(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


GENERATE = ["generate", "--bundle", "{bundle}", "--preference", "0.5,0.5"]
MERGE = ["merge", "--base", "{base}", "--experts", "{expert}", "--experts", "{expert2}", "--out", "{tmp}/o"]
TO_FILE = ["--input", "{tmp}/in.jsonl", "--output", "{tmp}/out.jsonl"]
PROMPTS = _text("in.jsonl", _rows({"prompt": "hi"}))

# (case id, argv, what the one line must contain, set-up)
PAIRS = _text("p.jsonl", _rows({"prompt": "a", "response": "b"}))
SCORE = ["score", "--input", "{tmp}/p.jsonl", "--out", "{tmp}/o.jsonl", "--objectives"]
EXPORT = ["export", "--bundle", "{bundle}", "--out", "{tmp}/o", "--preference"]
EXTRACT = ["extract", "--base", "{base}", "--out", "{tmp}/o", "--finetuned"]
EVALUATE = ["evaluate", "--bundle", "{bundle}", "--out", "{tmp}/o", "--scorers", "helpful=concision,harmless=civility"]
EVALUATE += ["--max-new-tokens", "8"]
ROUTER_CONFIG = _text("c.yaml", "scorers: {helpful: concision, harmless: civility}\n")
ROUTER = ["train-router", "--bundle", "{bundle}", "--work", "{tmp}/w", "--config", "{tmp}/c.yaml", "--anchor"]
CASES = [
    # ---- generate: decoding options, checked before the bundle's weights load
    ("generate-device", [*GENERATE, "--device", "foo", "hi"], "unknown device 'foo'", None),
    ("generate-cuda-absent", [*GENERATE, "--device", "cuda:7", "hi"], "device 'cuda:7'", None),
    ("generate-zero-tokens", [*GENERATE, "--max-new-tokens", "0", "hi"], "max_new_tokens (--max-new-tokens)", None),
    ("generate-huge-tokens", [*GENERATE, "--max-new-tokens", "100000000", "hi"], "below the model's context", None),
    ("generate-zero-temperature", [*GENERATE, "--sample", "--temperature", "0", "hi"], "temperature (--temp", None),
    ("generate-nan-temperature", [*GENERATE, "--sample", "--temperature", "nan", "hi"], "temperature (--temp", None),
    ("generate-top-p-zero", [*GENERATE, "--sample", "--top-p", "0", "hi"], "top_p (--top-p)", None),
    ("generate-top-p-two", [*GENERATE, "--sample", "--top-p", "2", "hi"], "top_p (--top-p)", None),
    ("generate-batch-zero", [*GENERATE, "--batch-size", "0", "hi"], "batch_size (--batch-size)", None),
    ("generate-dtype", [*GENERATE, "--dtype", "float7", "hi"], "unknown dtype 'float7'", None),
    ("generate-no-prompt", GENERATE, "give prompts", None),
    (
        "generate-no-bundle",
        ["generate", "--bundle", "{tmp}/none", "--preference", "1,0", "hi"],
        "not a HoE bundle",
        None,
    ),
    ("generate-preference-negative", [*GENERATE[:3], "--preference", "-1,2", "hi"], "must be non-negative", None),
    ("generate-preference-zero", [*GENERATE[:3], "--preference", "0,0", "hi"], "preference is all zero", None),
    ("generate-preference-nan", [*GENERATE[:3], "--preference", "nan,1", "hi"], "must be finite numbers", None),
    ("generate-preference-count", [*GENERATE[:3], "--preference", "1,0,0", "hi"], "has 3 values", None),
    ("generate-preference-text", [*GENERATE[:3], "--preference", "lots", "hi"], "cannot read preference", None),
    # ---- generate: JSONL requests
    (
        "jsonl-preference-number",
        [*GENERATE, *TO_FILE],
        "row 1: a preference is",
        _text("in.jsonl", _rows({"prompt": "a", "preference": 5})),
    ),
    (
        "jsonl-preference-text-weight",
        [*GENERATE, *TO_FILE],
        "row 1: preference weights must be numbers, got 'x'",
        _text("in.jsonl", _rows({"prompt": "a", "preference": {"helpful": "x"}})),
    ),
    (
        "jsonl-preference-bool-weight",
        [*GENERATE, *TO_FILE],
        "preference weights must be numbers, got True",
        _text("in.jsonl", _rows({"prompt": "a", "preference": [True, 1]})),
    ),
    (
        "jsonl-prompt-number",
        [*GENERATE, *TO_FILE],
        "line 1: each line needs a string 'prompt'",
        _text("in.jsonl", _rows({"prompt": 5})),
    ),
    ("jsonl-no-prompt", [*GENERATE, *TO_FILE], "each line needs a string 'prompt'", _text("in.jsonl", _rows({"x": 1}))),
    ("jsonl-not-object", [*GENERATE, *TO_FILE], "each line needs a string 'prompt'", _text("in.jsonl", "[1, 2]\n")),
    ("jsonl-malformed", [*GENERATE, *TO_FILE], "line 2: malformed JSON", _text("in.jsonl", '{"prompt": "a"}\n{"pr\n')),
    ("jsonl-empty", [*GENERATE, *TO_FILE], "holds no prompts", _text("in.jsonl", "")),
    ("jsonl-not-utf8", [*GENERATE, *TO_FILE], "not UTF-8", _bytes("in.jsonl", b'{"prompt": "caf\xe9"}\n')),
    ("jsonl-input-missing", [*GENERATE, *TO_FILE], "input file not found", None),
    ("jsonl-input-folder", [*GENERATE, *TO_FILE], "is a folder", lambda tmp: (tmp / "in.jsonl").mkdir()),
    (
        "jsonl-output-folder",
        [*GENERATE, "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o"],
        "is a folder",
        lambda tmp: (PROMPTS(tmp), (tmp / "o").mkdir()),
    ),
    ("jsonl-no-output", [*GENERATE, "--input", "{tmp}/in.jsonl"], "--input needs --output", PROMPTS),
    (
        "jsonl-output-is-input",
        [*GENERATE, "--input", "{tmp}/in.jsonl", "--output", "{tmp}/in.jsonl"],
        "is the input",
        PROMPTS,
    ),
    # ---- export
    ("export-preference", [*EXPORT, "x=1"], "unknown objective 'x'", None),
    ("export-rank-zero", [*EXPORT, "1,0", "--rank", "0"], "rank (--rank) must be positive", None),
    (
        "export-out-is-bundle",
        ["export", "--bundle", "{bundle}", "--preference", "1,0", "--out", "{bundle}", "--overwrite"],
        "overlaps the input",
        None,
    ),
    (
        "export-out-inside-bundle",
        ["export", "--bundle", "{bundle}", "--preference", "1,0", "--out", "{bundle}/experts/x"],
        "overlaps the input",
        None,
    ),
    ("export-dtype", [*EXPORT, "1,0", "--dtype", "x"], "unknown dtype 'x'", None),
    ("export-grid-one", [*EXPORT[:5], "--grid", "1"], "at least 2 points per edge", None),
    ("export-grid-merged", [*EXPORT[:5], "--grid", "3", "--merged"], "--merged writes one model", None),
    ("export-grid-rank", [*EXPORT[:5], "--grid", "3", "--rank", "1000"], "vLLM's limit", None),
    ("export-preferences-missing", [*EXPORT[:5], "--preferences", "{tmp}/none.txt"], "none.txt", None),
    (
        "export-preferences-negative",
        [*EXPORT[:5], "--preferences", "{tmp}/p.txt"],
        "non-negative",
        _text("p.txt", "0.5,0.5\n-1,2\n"),
    ),
    ("export-no-preference", EXPORT[:5], "exactly one of --preference, --grid and --preferences", None),
    # ---- merge
    ("merge-method", [*MERGE, "--method", "soup"], "unknown merge method 'soup'", None),
    ("merge-clip-negative", [*MERGE, "--method", "pcb", "--clip", "-1"], "clip (--clip) must lie in [0, 0.5)", None),
    ("merge-clip-high", [*MERGE, "--method", "pcb", "--clip", "0.9"], "clip (--clip) must lie in [0, 0.5)", None),
    ("merge-clip-nan", [*MERGE, "--method", "pcb", "--clip", "nan"], "clip (--clip) must lie in [0, 0.5)", None),
    ("merge-density", [*MERGE, "--method", "ties", "--density", "0"], "density (--density) must lie in (0, 1]", None),
    ("merge-keep", [*MERGE, "--method", "tsv", "--keep", "2"], "keep (--keep)", None),
    ("merge-majority-sign", [*MERGE, "--method", "ties", "--majority-sign", "most"], "majority", None),
    ("merge-weights-count", [*MERGE, "--weights", "1"], "has 1 values for 2 experts", None),
    ("merge-weights-negative", [*MERGE, "--weights", "1,-1"], "must be non-negative", None),
    ("merge-weights-nan", [*MERGE, "--weights", "nan,1"], "weights (--weights)[0]: input should be a finite", None),
    ("merge-rank", [*MERGE, "--rank", "0"], "rank (--rank)", None),
    ("merge-svd", [*MERGE, "--svd", "magic"], "svd (--svd)", None),
    ("merge-objectives-count", [*MERGE, "--objectives", "a,b,c"], "objectives", None),
    (
        "merge-missing-expert",
        ["merge", "--base", "{base}", "--experts", "{expert}", "--experts", "{tmp}/none", "--out", "{tmp}/o"],
        "model not found",
        None,
    ),
    (
        "merge-one-expert",
        ["merge", "--base", "{base}", "--experts", "{expert}", "--out", "{tmp}/o"],
        "at least two experts",
        None,
    ),
    (
        "merge-out-is-input",
        [
            "merge",
            "--base",
            "{base}",
            "--experts",
            "{expert}",
            "--experts",
            "{expert2}",
            "--out",
            "{expert}",
            "--overwrite",
        ],
        "overlaps the input",
        None,
    ),
    # ---- extract
    ("extract-rank", [*EXTRACT, "{ft}", "--rank", "0"], "rank (--rank)", None),
    ("extract-energy", [*EXTRACT, "{ft}", "--energy", "2"], "energy (--energy)", None),
    ("extract-svd", [*EXTRACT, "{ft}", "--svd", "magic"], "svd (--svd)", None),
    ("extract-device", [*EXTRACT, "{ft}", "--device", "foo"], "unknown device 'foo'", None),
    ("extract-dtype", [*EXTRACT, "{ft}", "--dtype", "int3"], "dtype", None),
    ("extract-target-modules", [*EXTRACT, "{ft}", "--target-modules", "no_such_proj"], "no_such_proj", None),
    ("extract-same", [*EXTRACT, "{base}"], "is the base itself", None),
    ("extract-missing", [*EXTRACT, "{tmp}/none"], "model not found", None),
    (
        "extract-out-is-base",
        ["extract", "--base", "{base}", "--finetuned", "{ft}", "--out", "{base}", "--overwrite"],
        "overlaps the input",
        None,
    ),
    # ---- score
    ("score-duplicate-objectives", [*SCORE, "concision,concision"], "'concision' is named twice", PAIRS),
    ("score-unknown-objective", [*SCORE, "concision,wit"], "unknown objective 'wit'", PAIRS),
    ("score-empty-objectives", [*SCORE, ","], "--objectives is empty", PAIRS),
    ("score-no-response", [*SCORE, "concision"], "needs a string 'response'", _text("p.jsonl", _rows({"prompt": "a"}))),
    ("score-batch", [*SCORE, "concision", "--batch-size", "0"], "batch_size (--batch-size) must be positive", PAIRS),
    ("score-device", [*SCORE, "concision", "--device", "foo"], "unknown device 'foo'", PAIRS),
    ("score-cache-folder", [*SCORE, "concision", "--cache", "{tmp}"], "cannot be used", PAIRS),
    (
        "score-cache-garbage",
        [*SCORE, "concision", "--cache", "{tmp}/c.sqlite"],
        "file is not a database",
        lambda tmp: (PAIRS(tmp), _text("c.sqlite", "junk " * 200)(tmp)),
    ),
    ("score-head-missing", [*SCORE, "head:{tmp}/none"], "none", PAIRS),
    # ---- evaluate
    ("evaluate-method", [*EVALUATE, "--methods", "hoe,magic"], "unknown method 'magic'", None),
    ("evaluate-preferences", [*EVALUATE, "--preferences", "grid:0"], "at least 2 points per edge", None),
    ("evaluate-preferences-file", [*EVALUATE, "--preferences", "{tmp}/none.txt"], "none.txt", None),
    ("evaluate-split", [*EVALUATE, "--split", "test"], "split", None),
    ("evaluate-limit", [*EVALUATE, "--limit", "0"], "limit (--limit)", None),
    ("evaluate-top-p", [*EVALUATE, "--sample", "--top-p", "2"], "top_p (--top-p)", None),
    ("evaluate-tokens", [*EVALUATE, "--max-new-tokens", "0"], "max_new_tokens (--max-new-tokens)", None),
    ("evaluate-reference", [*EVALUATE, "--reference", "a,b"], "--reference must be comma-separated numbers", None),
    ("evaluate-prompts", [*EVALUATE, "--prompts", "packaged:nothing"], "nothing", None),
    (
        "evaluate-scorer",
        ["evaluate", "--bundle", "{bundle}", "--out", "{tmp}/o", "--scorers", "helpful=wit"],
        "unknown objective 'wit'",
        None,
    ),
    ("evaluate-task-vectors", [*EVALUATE, "--task-vectors", "half"], "task", None),
    ("evaluate-device", [*EVALUATE, "--device", "foo"], "unknown device 'foo'", None),
    ("evaluate-out-is-bundle", [*EVALUATE[:3], "--out", "{bundle}", *EVALUATE[5:]], "bundle", None),
    ("evaluate-no-room", [*EVALUATE[:7], "--max-new-tokens", "64"], "leaves no room for a prompt", None),
    # ---- train-router
    ("train-router-on-expert", [*ROUTER, "1,0"], "anchor", ROUTER_CONFIG),
    ("train-router-anchor-zero", [*ROUTER, "0,0"], "preference is all zero", ROUTER_CONFIG),
    ("train-router-steps", [*ROUTER, "0.25,0.75", "--steps", "0"], "steps", ROUTER_CONFIG),
    ("train-router-scalarisation", [*ROUTER, "0.25,0.75", "--scalarisation", "max"], "scalarisation", ROUTER_CONFIG),
    ("train-router-config-key", [*ROUTER, "0.25,0.75"], "learning_rat", _text("c.yaml", "learning_rat: 1\n")),
    ("train-router-config-missing", [*ROUTER, "0.25,0.75"], "c.yaml", None),
    ("train-router-device", [*ROUTER, "0.25,0.75", "--device", "foo"], "unknown device 'foo'", ROUTER_CONFIG),
    # ---- damaged or hostile bundles and adapters
    (
        "bundle-adapter-config-malformed",
        ["generate", "--bundle", "{tmp}/b", "--preference", "1,0", "--max-new-tokens", "4", "hi"],
        "adapter_config.json: not valid JSON",
        _bundle_copy(lambda b: (b / "experts/helpful/adapter_config.json").write_text("{bad")),
    ),
    (
        "bundle-adapter-config-no-rank",
        ["generate", "--bundle", "{tmp}/b", "--preference", "1,0", "--max-new-tokens", "4", "hi"],
        "'r' (the LoRA rank) must be a positive integer",
        _bundle_copy(lambda b: (b / "experts/helpful/adapter_config.json").write_text('{"peft_type": "LORA"}')),
    ),
    (
        "bundle-adapter-ranks-differ",
        ["export", "--bundle", "{tmp}/b", "--preference", "1,0", "--out", "{tmp}/o"],
        "do not make a low-rank product",
        _bundle_copy(lambda b: _lower_rank_of_one_a(b / "experts/helpful")),
    ),
    (
        "bundle-adapter-truncated",
        ["export", "--bundle", "{tmp}/b", "--preference", "1,0", "--out", "{tmp}/o"],
        "",
        _bundle_copy(lambda b: _truncate(b / "experts/helpful/adapter_model.safetensors")),
    ),
    (
        "bundle-router-truncated",
        ["generate", "--bundle", "{tmp}/b", "--preference", "0.25,0.75", "--max-new-tokens", "4", "hi"],
        "",
        _bundle_copy(lambda b: _truncate(next((b / "routers").glob("*.safetensors")))),
    ),
    (
        "bundle-json-list",
        ["info", "--bundle", "{tmp}/b"],
        "unknown format version",
        _bundle_copy(lambda b: (b / "hoe.json").write_text("[]")),
    ),
    (
        "bundle-path-outside",
        ["generate", "--bundle", "{tmp}/b", "--preference", "1,0", "--max-new-tokens", "4", "hi"],
        "outside",
        _bundle_copy(
            lambda b: (b / "hoe.json").write_text(
                (b / "hoe.json").read_text().replace('"experts/helpful"', '"../../etc"')
            )
        ),
    ),
    (
        "merge-expert-meta-malformed",
        [
            "merge",
            "--base",
            "{base}",
            "--experts",
            "{tmp}/b/experts/helpful",
            "--experts",
            "{expert2}",
            "--out",
            "{tmp}/o",
        ],
        "hoe_expert.json: not valid JSON",
        _bundle_copy(lambda b: (b / "experts/helpful/hoe_expert.json").write_text("[1")),
    ),
    (
        "merge-malicious-pickle",
        ["merge", "--base", "{base}", "--experts", "{tmp}/evil", "--experts", "{expert2}", "--out", "{tmp}/o"],
        "cannot read a weights file",
        _pickled_adapter,
    ),
    # ---- --overwrite replaces only a command's own kind of output
    (
        "extract-overwrite-other-folder",
        [*EXTRACT, "{ft}", "--overwrite"],
        "a folder this command did not write",
        _text("o/notes.txt", "mine"),
    ),
    ("merge-overwrite-other-folder", [*MERGE, "--overwrite"], "no adapter_config.json", _text("o/notes.txt", "mine")),
    (
        "export-overwrite-model-folder",
        [*EXPORT, "1,0", "--overwrite"],
        "no adapter_config.json",
        _text("o/config.json", "{}"),
    ),
    (
        "export-merged-overwrite-adapter",
        [*EXPORT, "1,0", "--merged", "--overwrite"],
        "no config.json",
        _text("o/adapter_config.json", "{}"),
    ),
    # ---- info, build
    ("info-missing", ["info", "--bundle", "{tmp}/none"], "not a HoE bundle", None),
    ("info-bad-json", ["info", "--bundle", "{tmp}"], "not valid JSON", _text("hoe.json", "{")),
    ("build-missing-recipe", ["build", "--recipe", "{tmp}/none.yaml", "--out", "{tmp}/o"], "recipe not found", None),
    (
        "build-bad-yaml",
        ["build", "--recipe", "{tmp}/r.yaml", "--out", "{tmp}/o"],
        "not valid YAML",
        _text("r.yaml", "base: ["),
    ),
    (
        "build-recipe-list",
        ["build", "--recipe", "{tmp}/r.yaml", "--out", "{tmp}/o"],
        "a recipe is a mapping",
        _text("r.yaml", "- 1\n- 2\n"),
    ),
    ("build-out-is-recipe-folder", ["build", "--recipe", "{recipe}", "--out", "{recipe_folder}"], "recipe", None),
]


# ---- every command, option by option: a valid command line of each, changed in one place
PAIRS_FILE = _text("pp.jsonl", _rows({"prompt": "a", "chosen": "b", "rejected": "c"}))
VALID = {  # (argv, set-up): each runs (or would run) if nothing were changed
    "extract": (["extract", "--base", "{base}", "--finetuned", "{ft}", "--out", "{tmp}/o"], None),
    "merge": (MERGE, None),
    "build": (["build", "--recipe", "{recipe}", "--out", "{tmp}/o"], None),
    "info": (["info", "--bundle", "{bundle}"], None),
    "generate": ([*GENERATE, "--max-new-tokens", "4", "hi"], None),
    "export": ([*EXPORT, "1,0"], None),
    "evaluate": (EVALUATE, None),
    "train-router": ([*ROUTER, "0.25,0.75"], ROUTER_CONFIG),
    "score": ([*SCORE, "concision"], PAIRS),
    "train-reward": (["train-reward", "--pairs", "{tmp}/pp.jsonl", "--out", "{tmp}/o"], PAIRS_FILE),
    "make-expert": (["make-expert", "--objective", "concision", "--out", "{tmp}/o", "--base", "{base}"], None),
    "finetune": (["finetune", "--base", "{base}", "--out", "{tmp}/o"], None),
    "demo": (["demo", "--out", "{tmp}/o"], None),
    "cache": (["cache"], None),
    "serve": (["serve", "--bundle", "{bundle}", "--port", "0"], None),  # never valid here: it would serve
}


def _changed(command: str, option: str, value: str | None) -> list[str]:
    """The command's valid line with ``option`` set to ``value`` (added if absent; removed if None)."""
    argv = list(VALID[command][0])
    while option in argv:
        at = argv.index(option)
        del argv[at : at + 2]
    return argv if value is None else [*argv, option, value]


def _option_cases(table: dict[str, dict[str, list[tuple[str, str]]]]) -> list[tuple]:
    """(command -> option -> [(bad value, what the line must say)]) as cases."""
    return [
        (f"{command}{option}={value}", _changed(command, option, value), expected, VALID[command][1])
        for command, options in table.items()
        for option, values in options.items()
        for value, expected in values
    ]


POSITIVE = [("0", "greater than 0"), ("-1", "greater than 0")]
NOT_A_NUMBER = [("nan", ""), ("inf", "")]
BAD_VALUES = {  # what each command's settings refuse before any weights load
    "extract": {
        "--rank-attn": [("0", "greater than 0")],
        "--rank-mlp": [("-3", "greater than 0")],
        "--energy": [("0", "greater than 0"), ("1.5", "less than or equal to 1"), ("nan", "energy (--energy)")],
        "--svd": [("", "svd (--svd)")],
        "--device": [("cuda:7", "device 'cuda:7'"), ("", "device")],
        "--base": [("{tmp}/none", "model not found"), ("{tmp}", "")],
        "--finetuned": [("{tmp}/none.safetensors", "model not found")],
    },
    "merge": {
        "--method": [("", "unknown merge method")],
        "--objectives": [("a,a", "names an objective twice"), ("a", "has 1 names for 2 experts")],
        "--weights": [
            ("inf,1", "finite"),
            ("0,0", "all zero"),
            ("a,b", "comma-separated numbers"),
            ("", "has 0 values"),
        ],
        "--rank": [("-2", "greater than 0")],
        "--device": [("foo", "unknown device 'foo'"), ("cuda:7", "device 'cuda:7'")],
        "--dtype": [("int8", "dtype")],
        "--target-modules": [("no_such_proj", "no_such_proj")],
        "--base": [("{tmp}/none", "model not found")],
    },
    "generate": {
        "--max-new-tokens": [("-5", "greater than 0")],
        "--temperature": [("-1", "greater than 0"), ("inf", "finite number")],
        "--top-p": [("nan", "top_p (--top-p)"), ("-0.1", "greater than 0")],
        "--batch-size": [("-3", "greater than 0")],
        "--preference": [("", "empty preference"), ("a=1,b=2", "unknown objective 'a'"), ("inf,0", "finite")],
        "--bundle": [("{tmp}", "not a HoE bundle"), ("{expert}", "not a HoE bundle")],
    },
    "export": {
        "--grid": [("3", "exactly one of --preference, --grid")],
        "--preferences": [("{tmp}/none.txt", "exactly one of --preference, --grid")],
        "--rank": [("-1", "must be positive")],
        "--preference": [("", "empty preference"), ("1", "has 1 values"), ("inf,0", "finite"), ("0,0", "all zero")],
        "--bundle": [("{tmp}/none", "not a HoE bundle")],
    },
    "evaluate": {
        "--limit": [("-1", "greater than 0")],
        "--max-new-tokens": [("-1", "greater than 0")],
        "--max-prompt-tokens": POSITIVE,
        "--temperature": [("0", "greater than 0"), ("nan", "temperature (--temperature)")],
        "--top-p": [("0", "greater than 0"), ("nan", "top_p (--top-p)")],
        "--batch-size": POSITIVE,
        "--reference": [("nan,0", "reference"), ("1", "has 1 values for 2 objectives"), ("inf,inf", "reference")],
        "--preferences": [
            ("grid:x", "expected grid:K or simplex:STEP"),
            ("grid:-1", "at least 2 points"),
            ("magic", "preference file not found"),
        ],
        "--methods": [("", "no methods given"), ("hoe,hoe", "named twice")],
        "--merge-method": [("magic", "unknown merge method 'magic'")],
        "--split": [("", "unknown split")],
        "--prompts": [
            ("{tmp}/none.jsonl", "must start with packaged:, hub: or file:"),
            ("file:{tmp}/none.jsonl", "none.jsonl"),
        ],
        "--dtype": [("float7", "dtype")],
        "--bundle": [("{tmp}/none", "not a HoE bundle")],
        "--morlhf-config": [("{tmp}/none.yaml", "none.yaml")],
    },
    "train-router": {
        "--steps": [("-1", "greater than 0")],
        "--max-minutes": [
            ("0", "must be positive"),
            ("-1", "must be positive"),
            ("nan", "must be positive"),
            ("inf", "must be positive"),
        ],
        "--anchor": [("nan,1", "finite"), ("1,2,3", "has 3 values"), ("-1,2", "non-negative"), ("", "empty")],
        "--scalarisation": [("", "scalarisation")],
        "--bundle": [("{tmp}/none", "not a HoE bundle")],
    },
    "score": {
        "--batch-size": [("-1", "must be positive")],
        "--objectives": [
            ("rm:", "reward model"),
            ("head:", "not a reward head"),
            ("py:os", "py:module:function"),
            ("py:os:no_such_function", "cannot load scorer"),
            ("py:os:system", "failed: TypeError"),
        ],
        "--device": [("cuda:7", "device 'cuda:7'")],
    },
    "train-reward": {
        "--folds": [("1", "greater than or equal to 2"), ("0", "greater than or equal to 2"), ("21", "less than")],
        "--pairs": [("packaged:nothing", "unknown packaged preference pairs"), ("{tmp}/none.jsonl", "not found")],
    },
    "make-expert": {
        "--method": [("magic", "unknown method 'magic'")],
        "--objective": [("wit", "unknown objective 'wit'"), ("", "unknown objective ''")],
        "--prompts": [("packaged:nothing", "unknown packaged dataset"), ("{tmp}/x.jsonl", "must start with")],
        "--prompt-count": POSITIVE,
        "--k": [("0", "greater than or equal to 2"), ("1", "greater than or equal to 2")],
        "--max-new-tokens": POSITIVE,
        "--steps": POSITIVE,
        "--batch-size": POSITIVE,
        "--learning-rate": [*POSITIVE, ("nan", "learning_rate"), ("inf", "finite number")],
        "--beta": [*POSITIVE, ("nan", "beta (--beta)"), ("inf", "finite number")],
        "--max-length": [("0", "greater than 0"), ("8", "every prompt is longer than max-length 8")],
        "--device": [("foo", "unknown device 'foo'")],
        "--base": [("{tmp}/none", "model not found")],
    },
    "finetune": {
        "--data": [("nothing", "unknown packaged dataset 'nothing'")],
        "--steps": POSITIVE,
        "--batch-size": POSITIVE,
        "--max-length": POSITIVE,
        "--learning-rate": [*POSITIVE, ("nan", "learning_rate"), ("inf", "finite number")],
        "--device": [("foo", "unknown device 'foo'")],
        "--base": [("{tmp}/none", "model not found")],
    },
    "serve": {
        "--port": [("-1", "greater than or equal to 0"), ("70000", "less than or equal to 65535")],
        "--max-batch": [*POSITIVE, ("1000", "less than or equal to 256")],
        "--max-queue": [("-1", "greater than or equal to 0")],
        "--max-tokens": POSITIVE,
        "--host": [("", "host (--host)")],
        "--device": [("foo", "unknown device 'foo'"), ("cuda:7", "device 'cuda:7'")],
        "--dtype": [("float7", "dtype")],
        "--bundle": [("{tmp}/none", "not a HoE bundle"), ("{expert}", "not a HoE bundle")],
    },
    "demo": {
        "--profile": [("huge", "unknown profile 'huge'")],
        "--rank": [("0", "must be positive"), ("-1", "positive")],
    },
}
CASES += _option_cases(BAD_VALUES)
CASES += [
    ("make-expert-lora-rank-zero", [*VALID["make-expert"][0], "--lora", "--lora-rank", "0"], "lora_rank", None),
    (
        "make-expert-ppo-lora-rank",
        [*VALID["make-expert"][0], "--method", "ppo", "--lora-rank", "-1"],
        "lora_rank",
        None,
    ),
]

# ---- what click itself refuses, as one line too: an unknown option, a missing one, a value of the wrong type
CASES += [
    (f"{command}-unknown-option", [command, "--frobnicate"], "no such option: --frobnicate", None) for command in VALID
]
REQUIRED = {
    "extract": ["--base", "--finetuned", "--out"],
    "merge": ["--base", "--experts", "--out"],
    "build": ["--recipe", "--out"],
    "info": ["--bundle"],
    "generate": ["--bundle"],
    "export": ["--bundle", "--out"],
    "evaluate": ["--out"],
    "train-router": ["--bundle", "--anchor"],
    "score": ["--objectives", "--input", "--out"],
    "train-reward": ["--pairs", "--out"],
    "make-expert": ["--objective", "--out"],
    "finetune": ["--out"],
}
CASES += [
    (f"{command}-without{option}", _changed(command, option, None), f"missing option '{option}'", VALID[command][1])
    for command, options in REQUIRED.items()
    for option in options
]
NUMERIC = {
    "extract": ["--rank", "--rank-attn", "--rank-mlp", "--energy", "--seed"],
    "merge": ["--rank", "--density", "--seed", "--keep", "--clip"],
    "generate": ["--max-new-tokens", "--temperature", "--top-p", "--seed", "--batch-size"],
    "export": ["--rank"],
    "evaluate": [
        "--limit",
        "--max-new-tokens",
        "--max-prompt-tokens",
        "--temperature",
        "--top-p",
        "--batch-size",
        "--seed",
    ],
    "train-router": ["--steps", "--max-minutes"],
    "score": ["--batch-size"],
    "train-reward": ["--folds", "--seed"],
    "make-expert": [
        "--prompt-count",
        "--k",
        "--max-new-tokens",
        "--steps",
        "--batch-size",
        "--learning-rate",
        "--beta",
        "--lora-rank",
        "--max-length",
        "--seed",
    ],
    "finetune": ["--steps", "--batch-size", "--max-length", "--learning-rate", "--seed"],
    "demo": ["--rank"],
    "serve": ["--port", "--max-batch", "--max-queue", "--max-tokens"],
}
CASES += [
    (
        f"{command}{option}-not-a-number",
        _changed(command, option, "lots"),
        f"invalid value for '{option}'",
        VALID[command][1],
    )
    for command, options in NUMERIC.items()
    for option in options
]
CASES += [
    (
        f"{command}{option}-without-value",
        [*VALID[command][0], option],
        f"'{option}' requires an argument",
        VALID[command][1],
    )
    for command, option in [
        ("extract", "--out"),
        ("merge", "--method"),
        ("generate", "--preference"),
        ("evaluate", "--methods"),
        ("score", "--cache"),
        ("make-expert", "--method"),
    ]
]


@pytest.fixture(scope="module")
def places(bundle_dir, recipe_dir, tiny_chat_model) -> dict[str, str]:
    global BUNDLE
    BUNDLE = bundle_dir
    return {
        "bundle": str(bundle_dir),
        "expert": str(bundle_dir / "experts" / "helpful"),
        "expert2": str(bundle_dir / "experts" / "harmless"),
        "base": str(tiny_chat_model),
        "ft": str(recipe_dir / "ft-helpful"),
        "recipe": str(recipe_dir / "recipe.yaml"),
        "recipe_folder": str(recipe_dir),
    }


def _tree(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("argv, expected, setup", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(places, tmp_path, argv, expected, setup):
    if setup is not None:
        setup(tmp_path)
    before, bundle_before = _tree(tmp_path), _tree(Path(places["bundle"]))
    result = runner.invoke(app, [part.format(tmp=tmp_path, **places) for part in argv])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.output
    assert _tree(tmp_path) == before and _tree(Path(places["bundle"])) == bundle_before
