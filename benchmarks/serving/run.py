"""Load test of `hoe serve` on this machine: closed-loop clients on localhost, each request a random
preference λ and a held-out prompt, streamed (so that time to first token is measured as a client sees it).

Side by side in one run, at the same concurrency (1, 4 and 16 clients by default):
- hoe:           the server as shipped (continuous batching, a λ per row);
- hoe-compiled:  the same with `--compile` (the decoding step through torch.compile);
- hoe-serial:    the same server with batching disabled (--max-batch 1: one request at a time);
- base:          the base model alone through the same server and scheduler, no experts (what serving the
                 plain model costs; HoE's overhead is the ratio to it);
- base-compiled: the same with `--compile`.
Then a soak: 16 clients on `hoe-compiled` (or --soak-server) for --soak-seconds, counting errors and lost
requests.

    .venv/bin/python benchmarks/serving/run.py --bundle runs/demo/2-objectives/bundle

Writes results.json and throughput.png here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SERVERS = {  # name: (model, max batch, compiled decoding step)
    "hoe": ("hoe", 16, False),
    "hoe-compiled": ("hoe", 16, True),
    "hoe-serial": ("hoe", 1, False),
    "base": ("base", 16, False),
    "base-compiled": ("base", 16, True),
    "transformers-serve": ("transformers", 16, False),  # the peer: `transformers serve --continuous-batching`
}


class _NoRouting:
    """The routing state of a model without experts: nothing to set."""

    active = False

    def set(self, routings, dense=None) -> None:
        pass

    def clear(self) -> None:
        pass


class BaseOnly:
    """The bundle's base model alone, with the interface the server needs (objectives are accepted and
    ignored), so that the comparison runs through the same HTTP front and scheduler."""

    def __init__(self, hoe_model) -> None:
        from hoe.checkpoints import load_model

        self.bundle, self.tokenizer, self.objectives = hoe_model.bundle, hoe_model.tokenizer, hoe_model.objectives
        self.model = load_model(hoe_model.bundle.spec.base_model).eval()
        self.state = _NoRouting()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def routing(self, preference) -> dict[int, float]:
        return {}

    def describe_routing(self, preference) -> dict[str, float]:
        return {}


def start_server(model, max_batch: int):
    """The app in a thread of this process, on a free port (for screenshot.py)."""
    from hoe.serving.app import create_app
    from hoe.serving.server import BackgroundServer
    from hoe.serving.settings import ServeSettings

    return BackgroundServer(create_app(model, ServeSettings(bundle="-", max_batch=max_batch, max_queue=256)))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_only(kind: str, bundle: str, port: int, max_batch: int, compile_step: bool) -> None:
    """This script as a server process: the load never shares a Python interpreter (and its GIL) with it.
    Served the way `hoe serve` serves (decoding on the main thread)."""
    from hoe.model.hoe_model import HoEModel
    from hoe.serving.app import create_app
    from hoe.serving.server import serve_app
    from hoe.serving.settings import ServeSettings

    model = HoEModel.from_bundle(bundle).eval()
    model = BaseOnly(model) if kind == "base" else model
    settings = ServeSettings(bundle=bundle, port=port, max_batch=max_batch, max_queue=256, compile=compile_step)
    serve_app(create_app(model, settings, engine_thread=False), "127.0.0.1", port)


def server_process(kind: str, bundle: str, max_batch: int, compile_step: bool = False) -> tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "transformers":
        child = subprocess.Popen(transformers_serve(bundle, port), env={**os.environ, "HF_HUB_OFFLINE": "1"})
    else:
        command = [sys.executable, __file__, "--serve", kind, "--bundle", bundle, "--port", str(port)]
        child = subprocess.Popen([*command, "--max-batch", str(max_batch), *(["--compile"] if compile_step else [])])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # a compiled step takes minutes to compile before the server listens
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return child, url
        except OSError:
            time.sleep(0.5)
    child.kill()
    raise RuntimeError(f"the {kind} server did not start")


def transformers_serve(bundle: str, port: int) -> list[str]:
    """The command serving the bundle's base model with `transformers serve` (continuous batching, CPU,
    the same dtype as ours), from the local folder the bundle's base model resolves to."""
    return [
        str(Path(sys.executable).parent / "transformers"),
        "serve",
        base_folder(bundle),
        "--continuous-batching",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def base_folder(bundle: str) -> str:
    from hoe.checkpoints.loading import resolve_checkpoint
    from hoe.model.bundle import load_bundle

    return str(resolve_checkpoint(load_bundle(bundle).spec.base_model))


def one_request(
    url: str, prompt: str, objectives: list[str], max_tokens: int, rng: random.Random, model: str = "hoe"
) -> dict:
    """A streamed chat completion: latency, time to first token, tokens, or the error. With ``objectives``
    empty (a server that knows no preference) the body carries none."""
    weights = [rng.random() + 1e-3 for _ in objectives]
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **({"preference": weights} if objectives else {}),
    }
    request = urllib.request.Request(
        url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    start, first, tokens, done = time.perf_counter(), None, 0, False
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return {"error": chunk["error"]["message"]}
                if chunk.get("usage"):  # transformers serve sends it beside the finish reason, then no [DONE]
                    tokens = chunk["usage"]["completion_tokens"]
                    done = done or any(c.get("finish_reason") for c in chunk.get("choices") or [])
                elif chunk["choices"] and chunk["choices"][0]["delta"].get("content") and first is None:
                    first = time.perf_counter()
    except urllib.error.HTTPError as exc:  # the server's own words
        return {"error": f"HTTP {exc.code}: {json.loads(exc.read() or b'{}').get('error', {}).get('message')}"}
    except Exception as exc:  # counted, never raised: the load test reports errors
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not done:
        return {"error": "stream ended without [DONE]"}
    end = time.perf_counter()
    return {"latency": end - start, "ttft": (first or end) - start, "tokens": tokens, "start": start, "end": end}


def load(
    url: str,
    prompts: list[str],
    objectives: list[str],
    clients: int,
    seconds: float,
    max_tokens: int,
    model: str = "hoe",
) -> dict:
    """``clients`` closed-loop clients for ``seconds``; requests started before the deadline all finish."""
    results: list[dict] = []
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(index: int) -> None:
        rng = random.Random(index)
        sent = 0
        while time.perf_counter() < deadline:
            prompt = prompts[(index * 997 + sent) % len(prompts)]
            outcome = one_request(url, prompt, objectives, max_tokens, rng, model)
            sent += 1
            with lock:
                results.append(outcome)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    good = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    latencies, ttfts = sorted(r["latency"] for r in good), sorted(r["ttft"] for r in good)
    return {
        "clients": clients,
        "seconds": round(wall, 1),
        "requests": len(results),
        "errors": len(errors),
        "lost": sum(not e.startswith("HTTP ") for e in errors),  # no answer at all: a dropped or cut stream
        "error_examples": sorted(set(errors))[:3],
        "requests_per_s": round(len(good) / wall, 3),
        "tokens_per_s": round(sum(r["tokens"] for r in good) / wall, 1),
        "mean_tokens": round(statistics.mean(r["tokens"] for r in good), 1) if good else 0,
        "latency_p50_s": round(_quantile(latencies, 0.5), 2),
        "latency_p95_s": round(_quantile(latencies, 0.95), 2),
        "ttft_p50_s": round(_quantile(ttfts, 0.5), 2),
        "ttft_p95_s": round(_quantile(ttfts, 0.95), 2),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        clients = [r["clients"] for r in mine]
        left.plot(clients, [r["tokens_per_s"] for r in mine], marker="o", label=name)
        right.plot(clients, [r["ttft_p95_s"] for r in mine], marker="o", label=f"{name} p95")
    left.set(xlabel="concurrent clients", ylabel="generated tokens/s", xscale="log", title="throughput")
    right.set(
        xlabel="concurrent clients",
        ylabel="time to first token (s)",
        xscale="log",
        yscale="log",
        title="p95 time to first token (log scale)",
    )
    for axis in (left, right):
        axis.set_xticks(
            sorted({r["clients"] for r in rows}), labels=[str(c) for c in sorted({r["clients"] for r in rows})]
        )
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="runs/demo/2-objectives/bundle")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"which of {', '.join(SERVERS)} to load")
    parser.add_argument("--soak-server", default="hoe-compiled", choices=["hoe", "hoe-compiled"])
    parser.add_argument("--seconds", type=float, default=60, help="per server and concurrency")
    parser.add_argument("--soak-seconds", type=float, default=300, help="16 clients on hoe; 0 skips the soak")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--plot-only", action="store_true", help="redraw throughput.png from results.json")
    parser.add_argument("--serve", choices=["hoe", "base"], help=argparse.SUPPRESS)  # a server process (internal)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_only(args.serve, args.bundle, args.port, args.max_batch, args.compile)
        return
    if args.plot_only:  # the PNG again from the committed results, without a model
        plot(json.loads((args.out / "results.json").read_text())["rows"], args.out / "throughput.png")
        return

    from hoe.data import load_prompts
    from hoe.model.bundle import load_bundle

    prompts = load_prompts("packaged:hh-helpful-test", "heldout")
    objectives = load_bundle(args.bundle).objectives
    chosen = args.servers.split(",")
    if not set(chosen) <= set(SERVERS):
        parser.error(f"--servers: choose among {', '.join(SERVERS)}")
    rows, startup = [], {}
    for name, (kind, max_batch, compile_step) in SERVERS.items():
        if name not in chosen:
            continue
        started = time.perf_counter()
        child, url = server_process(kind, args.bundle, max_batch, compile_step)
        startup[name] = round(time.perf_counter() - started, 1)
        # the peer knows no preference and answers only to its model's name
        asks, model = ([], base_folder(args.bundle)) if kind == "transformers" else (objectives, "hoe")
        one_request(url, "warm up", asks, 4, random.Random(0), model)
        for clients in map(int, args.clients.split(",")):
            row = {"server": name, **load(url, prompts, asks, clients, args.seconds, args.max_tokens, model)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        child.terminate()
        child.wait()
    soak = None
    if args.soak_seconds > 0:
        child, url = server_process("hoe", args.bundle, 16, compile_step=args.soak_server == "hoe-compiled")
        soak = {"server": args.soak_server, **load(url, prompts, objectives, 16, args.soak_seconds, args.max_tokens)}
        print("soak", json.dumps(soak), flush=True)
        child.terminate()
        child.wait()
    top = max(map(int, args.clients.split(",")))
    at = {r["server"]: r for r in rows if r["clients"] == top}
    results = {
        "bundle": args.bundle,
        "max_tokens": args.max_tokens,
        "rows": rows,
        "soak": soak,
        "ratios_at_most_clients": {
            "clients": top,
            **{
                f"{mine}_over_{other}_tokens_per_s": round(at[mine]["tokens_per_s"] / at[other]["tokens_per_s"], 2)
                for mine in ("hoe", "hoe-compiled")
                for other in ("hoe-serial", "base", "base-compiled", "transformers-serve")
                if mine in at and other in at
            },
        },
        "startup_seconds": startup,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "server": "its own process (hoe serve's app)"},
        "command": f".venv/bin/python benchmarks/serving/run.py --bundle {args.bundle} --clients {args.clients} "
        f"--seconds {args.seconds:g} --soak-seconds {args.soak_seconds:g} --max-tokens {args.max_tokens}"
        + ("" if args.servers == ",".join(SERVERS) else f" --servers {args.servers}")
        + ("" if args.soak_server == "hoe-compiled" else f" --soak-server {args.soak_server}"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(rows, args.out / "throughput.png")
    print(json.dumps(results["ratios_at_most_clients"]))


if __name__ == "__main__":
    main()
