"""``hoe``: a thin command line over the Python API. Errors print one line and exit 2.

A command imports what it runs when it runs (the function-local imports below): importing the
whole package pulls in torch and transformers (about 4-7 s here), which ``hoe --help`` and an
argument error should not wait for. Options of a job with a settings model are generated from it
(``settings_option``), so their defaults and help cannot drift from the recipe's and the API's.
"""

from __future__ import annotations

import functools
import logging
import pickle
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from typer.core import TyperGroup

from hoe.errors import HoEError
from hoe.rewards.settings import RewardHeadSettings
from hoe.serving.settings import ServeSettings
from hoe.settings import Settings
from hoe.training.settings import PPO_LORA_RANK, MakeExpertSettings, SFTSettings, parse_floor


def _is(exc: BaseException, click_class: str) -> bool:
    """Whether ``exc`` is one of click's exception classes, by name: typer ships its own copy of click
    (``typer._click``, private), other typer versions use click itself."""
    return any(cls.__name__ == click_class for cls in type(exc).__mro__)


class OneLineUsageErrors(TyperGroup):
    """Click's own refusals (an unknown option, a value of the wrong type, a missing option) as one line
    and exit 2, like every other bad input, instead of a usage banner and a boxed message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:
            if _is(exc, "NoArgsIsHelpError"):  # bare ``hoe``: the help is printed already
                code = exc.exit_code
            elif _is(exc, "UsageError"):
                command = exc.ctx.command_path if exc.ctx else self._command_path(args)
                message = " ".join(exc.format_message().split()).rstrip(".")
                typer.echo(f"error: {command}: {message[:1].lower()}{message[1:]} (see {command} --help)", err=True)
                code = exc.exit_code
            elif _is(exc, "ClickException"):
                exc.show()
                code = exc.exit_code
            elif _is(exc, "Abort"):
                typer.echo("Aborted!", err=True)
                code = 1
            else:
                raise
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def _command_path(self, args) -> str:
        """``hoe COMMAND`` for an error click raised without a context (e.g. an option missing its value)."""
        args = sys.argv[1:] if args is None else list(args)
        named = [a for a in args if a in self.commands]
        return f"hoe {named[0]}" if named else "hoe"


app = typer.Typer(
    cls=OneLineUsageErrors,
    help="Multi-objective alignment with hierarchical experts (HoE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_VERBOSE = {"on": False}  # set by --verbose: anticipated failures then keep their traceback


def user_errors(command):
    """The one error boundary: a HoEError, and every failure a user's input or machine can cause
    (a missing, unreadable or full file; text that is not UTF-8; a corrupt safetensors file; a
    pickle that ``weights_only`` refuses), become one line on stderr and exit status 2. Under
    ``--verbose`` those keep their traceback; anything else (a bug) always shows it."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            message = user_error_message(exc)
            if message is None or (_VERBOSE["on"] and not isinstance(exc, HoEError)):
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def user_error_message(exc: Exception) -> str | None:
    """One line for a failure the user's input or machine can cause; None for anything else."""
    if isinstance(exc, HoEError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}"
    if isinstance(exc, IsADirectoryError | NotADirectoryError | PermissionError):
        return f"{exc.strerror.lower()}: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:  # a full disk, a read-only file system, ...
        return f"{exc.strerror.lower()}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    name = type(exc).__name__
    if name == "SafetensorError" or isinstance(exc, pickle.UnpicklingError):
        return f"cannot read a weights file ({name}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})"
    return None


def settings_option(model: type[Settings], field: str, *flags: str, **overrides):
    """A typer option whose default and help are the settings model's (required where it has no default)."""
    info = model.model_fields[field]
    default = ... if info.is_required() else info.default
    return typer.Option(
        overrides.pop("default", default), *flags, help=overrides.pop("help", info.description), **overrides
    )


def _device(device: str) -> str:
    """'auto' means CUDA when there is one, else the CPU; a device this machine lacks is one line."""
    from hoe.checkpoints.loading import resolve_device

    return resolve_device(device)


def _split(value: Optional[str]) -> Optional[list[str]]:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    import warnings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    _VERBOSE["on"] = verbose
    if not verbose:  # deprecation notices from the libraries are for their developers, not our users
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


@app.command()
@user_errors
def extract(
    base: str = typer.Option(..., help="Base model: folder, .gguf file, hub name, or 'smollm2-135m-instruct'."),
    finetuned: str = typer.Option(..., help="Fine-tuned model (any form as --base) or a peft LoRA folder."),
    out: Path = typer.Option(..., help="Output folder: a standard peft LoRA adapter."),
    rank: int = typer.Option(16, help="Rank of every module (the cap when --energy is given)."),
    rank_attn: Optional[int] = typer.Option(None, help="Rank of attention projections (overrides --rank)."),
    rank_mlp: Optional[int] = typer.Option(None, help="Rank of MLP projections (overrides --rank)."),
    energy: Optional[float] = typer.Option(
        None, help="Smallest rank keeping this share of ||tau||_F^2, capped by the ranks."
    ),
    svd: str = typer.Option("exact", help="SVD backend: exact | randomized."),
    dtype: str = typer.Option("float32", help="dtype of the saved factors (computation is float32/float64)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, or auto."),
    target_modules: Optional[str] = typer.Option(
        None, help="Comma-separated module names (peft rules); default: all linear layers."
    ),
    seed: int = typer.Option(0, help="Seed of the randomized backend."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Extract a LoRA expert from a fine-tuned model by task-SVD (tau = W_ft - W_base)."""
    from hoe.experts.extract import ExtractSettings, extract_expert, extract_summary

    settings = ExtractSettings.create(
        rank=rank,
        rank_attn=rank_attn,
        rank_mlp=rank_mlp,
        energy=energy,
        svd=svd,
        dtype=dtype,
        device=_device(device),
        target_modules=_split(target_modules),
        seed=seed,
    )
    report = extract_expert(base, finetuned, out, settings, overwrite=overwrite, progress=not quiet)
    typer.echo(extract_summary(report, out))


def _numbers(value: Optional[str], parse: Callable[[str], float], message: str) -> Optional[list]:
    """A comma-separated list of numbers as ``parse`` reads them (None for None); ``message`` as the
    one line if a part is not one."""
    if value is None:
        return None
    try:
        return [parse(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise HoEError(message) from None


def _floats(value: Optional[str], option: str) -> Optional[list[float]]:
    return _numbers(value, float, f"{option} must be comma-separated numbers, got '{value}'")


@app.command()
@user_errors
def merge(
    base: str = typer.Option(..., help="Base model the experts share (any reference form)."),
    experts: list[str] = typer.Option(
        ..., "--experts", help="Experts: peft LoRA folders or full fine-tuned models (repeat, or list after one flag)."
    ),
    out: Path = typer.Option(..., help="Output folder: a standard peft LoRA adapter."),
    weights: Optional[str] = typer.Option(
        None, help="Comma-separated non-negative weights, one per expert (default: equal)."
    ),
    method: str = typer.Option("linear", help="linear | ties | dare_linear | dare_ties | pcb | tsv."),
    rank: int = typer.Option(16, help="Rank of the merged expert."),
    density: Optional[float] = typer.Option(None, help="ties/dare/pcb: share of entries kept (0, 1]."),
    seed: Optional[int] = typer.Option(None, help="dare_*: seed of the random drop."),
    majority_sign: Optional[str] = typer.Option(None, help="ties/dare_ties: 'total' (sign of the sum) or 'count'."),
    normalize: Optional[bool] = typer.Option(
        None,
        "--normalize/--no-normalize",
        help="ties/dare_ties: weighted mean or sum of the agreeing entries (default: mean for ties, "
        "sum for dare_ties, as mergekit).",
    ),
    keep: Optional[float] = typer.Option(None, help="tsv: share of each task's singular vectors kept (default 1/N)."),
    clip: Optional[float] = typer.Option(None, help="pcb: outlier clipping quantile (default 1e-4)."),
    objectives: Optional[str] = typer.Option(None, help="Objective names of the experts, in order (for the anchor)."),
    svd: str = typer.Option(
        "randomized", help="SVD backend of the final compression: randomized (default, within 1% of exact) | exact."
    ),
    dtype: str = typer.Option("float32", help="dtype of the saved factors."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N, or auto."),
    target_modules: Optional[str] = typer.Option(None, help="Comma-separated module names (peft rules)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Merge LoRA experts (or full fine-tunes) into one multi-objective LoRA expert."""
    from hoe.merging.merge import MergeSettings, merge_experts, merge_summary

    given = {
        "density": density,
        "seed": seed,
        "majority_sign": majority_sign,
        "normalize": normalize,
        "keep": keep,
        "clip": clip,
    }
    experts = [part for entry in experts for part in entry.split(",") if part]
    settings = MergeSettings.create(
        method=method,
        weights=_floats(weights, "--weights"),
        rank=rank,
        params={k: v for k, v in given.items() if v is not None},
        svd=svd,
        dtype=dtype,
        device=_device(device),
        target_modules=_split(target_modules),
        objectives=_split(objectives),
    )
    report = merge_experts(base, experts, out, settings, overwrite=overwrite, progress=not quiet)
    typer.echo(merge_summary(report, out))


@app.command()
@user_errors
def build(
    recipe: Path = typer.Option(..., help="YAML recipe: base, objectives, experts, merges, routers."),
    out: Path = typer.Option(..., help="Bundle folder (updated in place: unchanged experts are reused)."),
    quiet: bool = typer.Option(False, help="No progress bars."),
    trust_recipe_code: bool = typer.Option(
        False, "--trust-recipe-code", help="Run py: objectives that the recipe's make: entries name (code)."
    ),
) -> None:
    """Build a HoE bundle from a recipe, extracting and merging experts as needed."""
    from hoe.pipeline.build import build_bundle

    bundle = build_bundle(recipe, out, progress=not quiet, trust_recipe_code=trust_recipe_code)
    typer.echo(
        f"{out}: {len(bundle.experts)} LoRA experts, {len(bundle.routers)} routers over {', '.join(bundle.objectives)}"
    )


@app.command()
@user_errors
def info(bundle: Path = typer.Option(..., help="Bundle folder.")) -> None:
    """Show a bundle: objectives, experts and routers with their anchors."""
    from hoe.model import load_bundle
    from hoe.model.bundle import adapter_shapes

    spec = load_bundle(bundle)
    typer.echo(f"base: {spec.spec.base_model}\nobjectives: {', '.join(spec.objectives)}")
    for entry in spec.experts:
        ranks = sorted({a[0] for a, _ in adapter_shapes(spec.expert_path(entry)).values()})
        kind = (entry.source or {}).get("kind", "?")
        typer.echo(f"  expert {entry.name:<20} anchor {entry.anchor}  rank {'/'.join(map(str, ranks))}  ({kind})")
    for router in spec.routers:
        state = "trained" if router.trained else "untrained"
        typer.echo(f"  router {router.name:<20} anchor {router.anchor}  covers {', '.join(router.covers)}  ({state})")


def _read_jsonl(path: Path) -> list[dict]:
    from hoe.utils.io import read_prompt_rows

    return read_prompt_rows(path)


@app.command()
@user_errors
def generate(
    prompts: Optional[list[str]] = typer.Argument(
        None, help="Prompts (or use --input); answers are printed separated by '---' lines."
    ),
    bundle: Path = typer.Option(..., help="Bundle folder."),
    preference: Optional[str] = typer.Option(None, help="λ: 'helpful=0.7,harmless=0.3' or '0.7,0.3' (normalised)."),
    input: Optional[Path] = typer.Option(None, help="JSONL with {'prompt': ..., 'preference': optional} per line."),
    output: Optional[Path] = typer.Option(
        None, help="JSONL to write (with --input); an interrupted run resumes from <output>.partial."
    ),
    max_new_tokens: int = typer.Option(128, help="Tokens to generate."),
    sample: bool = typer.Option(
        False, "--sample/--greedy", help="Sample (with --temperature/--top-p) or decode greedily."
    ),
    temperature: float = typer.Option(0.7, help="Sampling temperature."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass."),
    seed: int = typer.Option(0, help="Seed for sampling."),
    batch_size: int = typer.Option(8, help="Prompts per batch; rows may carry different preferences."),
    device: str = typer.Option("auto", help="cpu, cuda, or auto."),
    dtype: str = typer.Option("float32", help="Model dtype."),
) -> None:
    """Answer prompts under a preference vector, per request."""
    from hoe.checkpoints.chat import context_length
    from hoe.checkpoints.loading import parse_dtype
    from hoe.model import HoEModel, load_bundle
    from hoe.model.batch import generate_rows
    from hoe.model.settings import GenerateSettings
    from hoe.routing import parse_preference
    from hoe.utils.io import check_output_file

    settings = GenerateSettings.create(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
    )
    device, _ = _device(device), parse_dtype(dtype)
    spec = load_bundle(bundle)
    if input is not None:
        if output is None:
            raise HoEError("--input needs --output")
        check_output_file(output, overwrite=True, inputs=(input,))
        rows = _read_jsonl(input)
    elif prompts:
        rows = [{"prompt": p} for p in prompts]
    else:
        raise HoEError("give prompts as arguments or --input FILE.jsonl")
    for number, row in enumerate(rows, 1):
        chosen = row["preference"] if row.get("preference") is not None else preference
        if chosen is None:
            raise HoEError(f"prompt {number} has no preference: pass --preference or a 'preference' field")
        try:
            vector = parse_preference(chosen, spec.objectives)
        except HoEError as exc:
            if input is None:  # the one --preference of the command line
                raise
            raise HoEError(f"{input} row {number}: {exc}") from None
        row["preference"] = dict(zip(spec.objectives, map(float, vector)))
    settings.check_context(context_length(spec.spec.base_model))
    model = HoEModel.from_bundle(bundle, device=device, dtype=dtype)
    answered = generate_rows(
        model,
        rows,
        settings.generate_options(),
        batch_size=settings.batch_size,
        seed=settings.seed,
        output=output,
        progress=output is not None,
    )
    if output is None:
        typer.echo("\n---\n".join(row["response"] for row in answered))
        return
    typer.echo(f"{output}: {len(answered)} responses")


@app.command()
@user_errors
def export(
    bundle: Path = typer.Option(..., help="Bundle folder."),
    preference: Optional[str] = typer.Option(None, help="λ to fold, e.g. 'helpful=0.7,harmless=0.3'."),
    out: Path = typer.Option(..., help="Output folder."),
    grid: Optional[int] = typer.Option(
        None, help="Instead of one λ: K points per simplex edge, one vLLM-ready LoRA each, and vllm-serve.sh."
    ),
    preferences: Optional[Path] = typer.Option(
        None, help="Instead of one λ: a file of preferences (one per line), one vLLM-ready LoRA each."
    ),
    merged: bool = typer.Option(False, help="Write a full model with the mixture merged in, not a LoRA folder."),
    dtype: str = typer.Option("float32", help="dtype of the written weights."),
    rank: Optional[int] = typer.Option(
        None,
        help="Recompress the LoRA to this rank (the folded rank is the sum of the active experts' ranks, "
        "which can exceed a server's limit such as vLLM's --max-lora-rank); the error is reported.",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Fold one preference into a plain peft LoRA folder (or a merged model) for peft or vLLM; or, with --grid
    or --preferences, one LoRA per preference and the `vllm serve` command that serves them all."""
    from hoe.model.export import export_grid, export_preference

    if sum(x is not None for x in (preference, grid, preferences)) != 1:
        raise HoEError("give exactly one of --preference, --grid and --preferences")
    if preference is None:
        if merged:
            raise HoEError("--merged writes one model: use it with --preference")
        manifest = export_grid(
            bundle, _preference_list(bundle, grid, preferences), out, rank=rank, dtype=dtype, overwrite=overwrite
        )
        typer.echo(
            f"{out}: {len(manifest['adapters'])} LoRA adapters of rank {manifest['rank']} "
            f"(vLLM: --max-lora-rank {manifest['max_lora_rank']}); serve them with {out / 'vllm-serve.sh'}"
        )
        return
    record = export_preference(bundle, preference, out, merged=merged, overwrite=overwrite, dtype=dtype, rank=rank)
    gates = ", ".join(f"{k}={v:.3g}" for k, v in record["gates"].items())
    what = "merged model" if merged else f"LoRA adapter of rank {record['rank']}"
    cost = ""
    if "recompression" in record:
        cost = f"; recompressed to rank {rank}: relative error {record['recompression']['relative_error']:.3g}"
    typer.echo(f"{out}: {what} for gates {gates}{cost}")


def _preference_list(bundle: Path, grid: Optional[int], preferences: Optional[Path]) -> list:
    """The preferences of --grid K or --preferences FILE over the bundle's objectives."""
    from hoe.evaluation.preference_sets import preference_set
    from hoe.model.bundle import load_bundle

    return preference_set(f"grid:{grid}" if grid is not None else str(preferences), load_bundle(bundle).objectives)


@app.command()
@user_errors
def evaluate(
    bundle: Optional[Path] = typer.Option(None, help="Bundle folder (not needed with --report-only)."),
    out: Path = typer.Option(
        ..., help="Run folder: generations (cached, resumable), results.json/.csv, report.md, fronts.png."
    ),
    preferences: str = typer.Option(
        "grid:5",
        help="grid:K (K points per simplex edge), simplex:STEP, anchors (the bundle's experts, merges and routers), "
        "or a file of preferences; '+' unites sets (grid:6+anchors).",
    ),
    methods: str = typer.Option(
        ",".join(["hoe", "soup", "merged", "rs", "mod", "experts", "base"]),
        help="Comma-separated: hoe, soup, merged, rs, mod, morlhf (a PPO run per λ), experts, base.",
    ),
    prompts: str = typer.Option(
        "packaged:hh-helpful-test", help="Prompt spec: packaged:NAME, hub:DATASET@SPLIT#FIELD, A+B."
    ),
    split: str = typer.Option("heldout", help="train, eval, heldout or all (hash split of each prompt)."),
    limit: Optional[int] = typer.Option(64, help="At most this many prompts."),
    scorers: Optional[str] = typer.Option(
        None, help="objective=SPEC,... where an objective is not itself a scorer name."
    ),
    max_new_tokens: int = typer.Option(64, help="Tokens to generate per answer."),
    max_prompt_tokens: Optional[int] = typer.Option(
        None, help="Cut longer prompts from the left (the latest turn stays)."
    ),
    sample: bool = typer.Option(
        False, "--sample/--greedy", help="Sample (seeded) or decode greedily; the same for every method."
    ),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass (not used by mod)."),
    batch_size: int = typer.Option(16, help="Prompts per batch, the same for every method."),
    seed: int = typer.Option(0, help="Seed of everything random in the run."),
    task_vectors: str = typer.Option(
        "auto", help="For rs and the expert models: full (fine-tuned models), lora, or auto."
    ),
    merge_method: Optional[str] = typer.Option(
        None, help="Merge method of `merged` (default: the bundle's, else pcb)."
    ),
    reference: Optional[str] = typer.Option(
        None, help="Hypervolume reference point, comma-separated (default: from the run)."
    ),
    morlhf_config: Optional[Path] = typer.Option(
        None, help="PPO config (YAML, hoe.rl.TrainConfig) of morlhf's per-λ LoRA runs."
    ),
    report_only: bool = typer.Option(False, help="Rebuild the report from cached generations; no model loads."),
    overwrite: bool = typer.Option(False, help="Discard cached generations made with other settings."),
    device: str = typer.Option("cpu", help="cpu, cuda, or auto (each accelerate process takes its own device)."),
    dtype: str = typer.Option("float32", help="Model dtype."),
    trust_bundle_code: bool = typer.Option(
        False, "--trust-bundle-code", help="Run py: scorers that the bundle's hoe.json names (code from the bundle)."
    ),
) -> None:
    """Pareto fronts of HoE and its peers on the same prompts: hypervolume, controllability, cost."""
    from hoe.evaluation import Decoding, EvalSettings, build_report, evaluate, methods_table, verdict

    reference_point = _floats(reference or None, "--reference")
    if report_only:
        results = build_report(out, reference=reference_point)
    else:
        if bundle is None:
            raise HoEError("--bundle is required (or pass --report-only to rebuild a report)")
        mapping = {}
        for item in _split(scorers) or []:
            objective, sep, spec = item.partition("=")
            if not sep or not spec:
                raise HoEError(f"--scorers entry '{item}' must look like objective=SPEC")
            mapping[objective.strip()] = spec.strip()
        decoding = Decoding.create(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
            max_prompt_tokens=max_prompt_tokens,
        )
        settings = EvalSettings.create(
            bundle=str(bundle),
            preferences=preferences,
            methods=_split(methods) or [],
            prompts=prompts,
            split=split,
            limit=limit,
            decoding=decoding,
            scorers=mapping,
            task_vectors=task_vectors,
            merge_method=merge_method,
            reference=reference_point,
            device=device,
            dtype=dtype,
            morlhf_config=str(morlhf_config) if morlhf_config else None,
            trust_bundle_code=trust_bundle_code,
        )
        results = evaluate(settings, out, overwrite=overwrite)
        if not results:  # a non-main accelerate process
            return
    typer.echo(methods_table(results))
    sentence = verdict(results)
    if sentence:
        typer.echo(sentence.replace("**", ""))
    typer.echo(f"{out}: report.md, results.json, results.csv, fronts.png")


@app.command("train-router")
@user_errors
def train_router_command(
    bundle: Path = typer.Option(..., help="Bundle folder; the trained router is written into it."),
    anchor: str = typer.Option(..., help="The router's anchor λ, e.g. '0.5,0.5' or 'civility=0.3,concision=0.7'."),
    config: Optional[Path] = typer.Option(None, help="Training config (YAML); see hoe.rl.TrainConfig for every key."),
    steps: Optional[int] = typer.Option(None, help="Override the config's PPO steps."),
    scalarisation: Optional[str] = typer.Option(None, help="Override: tchebycheff-omd, linear or single."),
    work: Optional[Path] = typer.Option(
        None, help="Checkpoints, curve.csv, TensorBoard logs (default BUNDLE/training/ROUTER)."
    ),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint (bit for bit)."),
    overwrite: bool = typer.Option(False, help="Train again a router that is trained already."),
    device: str = typer.Option("cpu", help="cpu, cuda, or auto."),
    max_minutes: Optional[float] = typer.Option(
        None,
        help="Stop after the step that crosses this wall time; the router so far is written and --resume continues.",
    ),
    trust_bundle_code: bool = typer.Option(
        False, "--trust-bundle-code", help="Run py: scorers that the bundle's hoe.json names (code from the bundle)."
    ),
) -> None:
    """Train the router expert at one anchor by PPO (Tchebycheff + OMD by default)."""
    from hoe.pipeline.train_router import router_training_summary, train_router
    from hoe.rl import load_config

    settings = load_config(config, steps=steps, scalarisation=scalarisation)
    summary = train_router(
        bundle,
        anchor,
        settings,
        work=work,
        resume=resume,
        overwrite=overwrite,
        device=_device(device),
        max_minutes=max_minutes,
        trust_bundle_code=trust_bundle_code,
    )
    if summary["last"] and summary["main_process"]:
        typer.echo(router_training_summary(summary))


@app.command()
@user_errors
def score(
    objectives: str = typer.Option(
        ...,
        help="Comma-separated: civility, relevance, positivity, concision, readability, rm:MODEL[#preset], "
        "py:module:function.",
    ),
    input: Path = typer.Option(..., help="JSONL with {'prompt', 'response'} per line (other fields are kept)."),
    out: Path = typer.Option(..., help="JSONL to write, each line with 'scores' added."),
    cache: Optional[Path] = typer.Option(None, help="SQLite score cache (reused across runs)."),
    device: str = typer.Option("cpu", help="Device of reward models."),
    batch_size: int = typer.Option(8, help="Pairs per reward-model forward."),
    trust_remote_code: bool = typer.Option(
        False, help="Allow reward-model code from the checkpoint (only if you trust it)."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Score (prompt, response) pairs for each objective."""
    import json
    import time

    from hoe.rewards import ScoreCache, score_objectives
    from hoe.utils.io import check_output_file, one_writer, read_jsonl, write_text

    check_output_file(out, overwrite, inputs=(input,) + ((cache,) if cache else ()))
    rows = read_jsonl(input, required=("prompt", "response"), what="prompts")
    names = _split(objectives) or []
    if not names:
        raise HoEError("--objectives is empty")
    start = time.perf_counter()
    with one_writer(out, "hoe score"):
        check_output_file(out, overwrite)  # again: a run that held the lock before may have written it
        scores = score_objectives(
            names,
            [r["prompt"] for r in rows],
            [r["response"] for r in rows],
            cache=ScoreCache(cache) if cache else None,
            device=_device(device),
            batch_size=batch_size,
            trust_remote_code=trust_remote_code,
        )
        for index, row in enumerate(rows):
            row["scores"] = {name: values[index] for name, values in scores.items()}
        write_text(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    means = ", ".join(f"{name} {sum(values) / len(values):.4f}" for name, values in scores.items())
    typer.echo(f"{out}: {len(rows)} pairs in {time.perf_counter() - start:.1f} s; means: {means}")


@app.command("train-reward")
@user_errors
def train_reward_command(
    pairs: str = settings_option(RewardHeadSettings, "pairs"),
    out: Path = typer.Option(..., help="Output folder: head.safetensors, head.json and the accuracy report."),
    folds: int = settings_option(RewardHeadSettings, "folds"),
    seed: int = settings_option(RewardHeadSettings, "seed"),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Train a learned reward (a Bradley–Terry head on MiniLM embeddings) from preference pairs; use it as
    the objective head:OUT. Accuracy is measured on the pairs of the eval and held-out prompt splits."""
    from hoe.rewards.preference_head import reward_head_summary, train_reward_head

    settings = RewardHeadSettings.create(pairs=pairs, folds=folds, seed=seed)
    typer.echo(reward_head_summary(train_reward_head(settings, out, overwrite=overwrite), out))


def _round_steps(value: Optional[str]) -> Optional[list[int]]:
    """--round-steps 96,48,48 as a list of integers."""
    message = f"--round-steps takes whole numbers separated by commas, e.g. 96,48,48, got {value!r}"
    return _numbers(value or None, int, message)


def _floor(value: Optional[str]) -> Optional[dict[str, float]]:
    """--floor relevance=0.5[,name=score...] as {objective: score}."""
    return None if value is None else parse_floor(value)


@app.command("make-expert")
@user_errors
def make_expert_command(
    objective: str = settings_option(MakeExpertSettings, "objective"),
    out: Path = typer.Option(..., help="Output transformers folder."),
    base: str = typer.Option("smollm2-135m-instruct", help="Model to align (any reference form)."),
    method: str = settings_option(MakeExpertSettings, "method"),
    instruction: Optional[str] = settings_option(MakeExpertSettings, "instruction"),
    prompts: str = settings_option(MakeExpertSettings, "prompts"),
    prompt_count: int = settings_option(MakeExpertSettings, "prompt_count"),
    keep_prompts: Optional[str] = settings_option(MakeExpertSettings, "keep_prompts"),
    keep_count: Optional[int] = settings_option(MakeExpertSettings, "keep_count"),
    k: int = settings_option(MakeExpertSettings, "k"),
    max_new_tokens: int = settings_option(MakeExpertSettings, "max_new_tokens"),
    steps: int = settings_option(MakeExpertSettings, "steps"),
    round_steps: Optional[str] = settings_option(MakeExpertSettings, "round_steps"),
    batch_size: int = settings_option(MakeExpertSettings, "batch_size"),
    learning_rate: Optional[float] = settings_option(MakeExpertSettings, "learning_rate"),
    beta: float = settings_option(MakeExpertSettings, "beta"),
    sft_weight: float = settings_option(MakeExpertSettings, "sft_weight"),
    precision: str = settings_option(MakeExpertSettings, "precision"),
    floor: Optional[str] = settings_option(MakeExpertSettings, "floor"),
    lora: bool = typer.Option(
        False,
        "--lora",
        help="Train a LoRA instead of every weight (ppo always does): OUT holds the "
        "merged model and OUT/adapter the peft adapter, a HoE expert as it is.",
    ),
    lora_rank: int = settings_option(
        MakeExpertSettings, "lora_rank", default=PPO_LORA_RANK, help="Rank of the LoRA (with --lora, and for ppo)."
    ),
    max_length: int = settings_option(MakeExpertSettings, "max_length"),
    seed: int = settings_option(MakeExpertSettings, "seed"),
    device: str = typer.Option("auto", help="cpu, cuda, or auto."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Make a single-objective expert of the base (resumable: sampling and training both continue after an
    interruption)."""
    from hoe.training.make_expert import make_expert, make_expert_summary

    settings = MakeExpertSettings.create(
        objective=objective,
        method=method,
        instruction=instruction,
        prompts=prompts,
        prompt_count=prompt_count,
        keep_prompts=keep_prompts,
        keep_count=keep_count,
        k=k,
        max_new_tokens=max_new_tokens,
        steps=steps,
        round_steps=_round_steps(round_steps),
        batch_size=batch_size,
        learning_rate=learning_rate,
        beta=beta,
        sft_weight=sft_weight,
        precision=precision,
        floor=_floor(floor),
        seed=seed,
        max_length=max_length,
        lora_rank=lora_rank if lora or method == "ppo" else None,
    )
    report = make_expert(base, settings, out, device=_device(device), overwrite=overwrite)
    typer.echo(make_expert_summary(report, out))


@app.command()
@user_errors
def finetune(
    base: str = typer.Option("smollm2-135m-instruct", help="Model to fine-tune (any reference form)."),
    data: str = typer.Option("hh-helpful-sft", help="Packaged dataset: hh-helpful-sft | hh-harmless | alpaca-davinci."),
    out: Path = typer.Option(..., help="Output transformers folder."),
    steps: int = settings_option(SFTSettings, "steps"),
    batch_size: int = settings_option(SFTSettings, "batch_size"),
    max_length: int = settings_option(SFTSettings, "max_length"),
    learning_rate: float = settings_option(SFTSettings, "learning_rate"),
    seed: int = settings_option(SFTSettings, "seed"),
    device: str = typer.Option("auto", help="cpu, cuda, or auto."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out."),
) -> None:
    """Full supervised fine-tune (resumable: rerun the same command after an interruption)."""
    from hoe.data import sft_pairs
    from hoe.training.sft import supervised_finetune

    settings = SFTSettings.create(
        steps=steps, batch_size=batch_size, max_length=max_length, learning_rate=learning_rate, seed=seed
    )
    log = supervised_finetune(base, sft_pairs(data), out, settings, device=_device(device), overwrite=overwrite)
    typer.echo(f"{out}: {log['step']} steps, final loss {log['losses'][-1]:.3f}, {log['seconds']:.0f} s")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where the demo's artifacts go."),
    profile: str = typer.Option(
        "quick",
        help="quick (the two-objective suite, about 20 min on 2 cores the first time) or full (both suites: the "
        "README's numbers).",
    ),
    rank: Optional[int] = typer.Option(
        None, help="Every expert's and merge's rank, over the recipes' own (default: the recipes', 32 in both suites)."
    ),
) -> None:
    """The embedded default end to end (SmolLM2-135M-Instruct, offline): experts, bundle, Pareto evaluation."""
    from hoe.pipeline.demo import run_demo

    run_demo(out, profile=profile, rank=rank)


@app.command()
@user_errors
def serve(
    bundle: Optional[Path] = typer.Option(
        None, help="Bundle folder (default: the demo's, runs/demo/2-objectives/bundle)."
    ),
    host: str = settings_option(ServeSettings, "host"),
    port: int = settings_option(ServeSettings, "port"),
    device: str = settings_option(ServeSettings, "device"),
    dtype: str = settings_option(ServeSettings, "dtype"),
    max_batch: int = settings_option(ServeSettings, "max_batch"),
    max_queue: int = settings_option(ServeSettings, "max_queue"),
    max_tokens: int = settings_option(ServeSettings, "max_tokens"),
    compile: bool = settings_option(ServeSettings, "compile"),
    api_key: Optional[str] = settings_option(ServeSettings, "api_key", envvar="HOE_API_KEY"),
) -> None:
    """Serve a bundle over OpenAI's HTTP API (chat and text completions, streaming); each request may carry
    its own preference ('preference' in the body, or model 'hoe:helpful=0.7,harmless=0.3')."""
    from hoe.model.bundle import load_bundle

    try:
        from hoe.serving.server import default_bundle, serve
    except ImportError as exc:  # the web stack is an extra
        raise HoEError(f"hoe serve needs {exc.name}: pip install 'hoe[serve]'") from None

    settings = ServeSettings.create(
        bundle=str(bundle or default_bundle()),
        host=host,
        port=port,
        device=_device(device),
        dtype=dtype,
        max_batch=max_batch,
        max_queue=max_queue,
        max_tokens=max_tokens,
        compile=compile,
        api_key=api_key,
    )
    load_bundle(settings.bundle)  # a damaged bundle is one line before any weights load
    if settings.compile:
        typer.echo("compiling the decoding step first (a few minutes on a CPU)", err=True)
    typer.echo(f"serving {settings.bundle} at http://{settings.host}:{settings.port} (Ctrl-C stops)", err=True)
    serve(settings)


@app.command()
@user_errors
def cache(clear: bool = typer.Option(False, help="Delete the cache (converted models, demo fine-tunes).")) -> None:
    """Show (or clear) the cache of converted models and demo fine-tunes."""
    import shutil

    from hoe.checkpoints.loading import cache_root

    root = cache_root()
    if clear:
        shutil.rmtree(root, ignore_errors=True)
        typer.echo(f"cleared {root}")
        return
    typer.echo(str(root))
    for entry in sorted(root.glob("*/*")) if root.exists() else []:
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        typer.echo(f"  {entry.relative_to(root)}  {size / 2**20:.0f} MB")


MULTI_VALUE_OPTIONS = {"--experts"}


def expand_multi_value(argv: list[str]) -> list[str]:
    """Let ``--experts A B C`` mean ``--experts A --experts B --experts C`` (click options take
    one value each); the values run until the next token that starts with '-'."""
    result, current = [], None
    for token in argv:
        if token in MULTI_VALUE_OPTIONS:
            current = token
            continue
        if current and not token.startswith("-"):
            result += [current, token]
            continue
        current = None
        result.append(token)
    return result


def main_entry() -> None:
    """Console entry point of ``hoe``."""
    sys.argv = [sys.argv[0], *expand_multi_value(sys.argv[1:])]
    app()


if __name__ == "__main__":  # pragma: no cover
    main_entry()
