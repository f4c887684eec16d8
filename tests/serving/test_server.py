"""`hoe serve` on the tiny bundle, through the official `openai` client and raw HTTP: answers, streaming,
the preference as an extra field and as a model name, batches of mixed preferences that answer each
request as `HoEModel.generate` answers it alone, bad input as HTTP 400, auth, a full queue, and a client
that disconnects."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from serving_helpers import Running

from hoe.errors import HoEError
from hoe.serving.engine import Engine, wait_idle


@pytest.fixture(scope="module")
def served(tiny_hoe_model):
    running = Running(tiny_hoe_model, max_batch=8)
    yield running
    running.stop()


def alone(model, prompt: str, preference, tokens: int) -> str:
    return model.generate(prompt, preference, max_new_tokens=tokens, do_sample=False)[0]


def ask_together(client, requests: list[tuple[str, list[float], int]]) -> list[str]:
    """(prompt, preference, max tokens) requests sent at once, greedy: their answers in order."""

    def ask(request):
        prompt, preference, tokens = request
        reply = client.chat.completions.create(
            model="hoe",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=tokens,
            temperature=0,
            extra_body={"preference": preference},
        )
        return reply.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(ask, requests))


def test_chat_answers_with_its_routing_and_usage(served, tiny_hoe_model):
    reply = served.client().chat.completions.create(
        model="hoe",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=6,
        temperature=0,
        extra_body={"preference": {"helpful": 0.8, "harmless": 0.2}},
    )
    assert reply.choices[0].message.content == alone(tiny_hoe_model, "Say hello", [0.8, 0.2], 6)
    assert reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 6 and reply.usage.prompt_tokens > 0
    used = reply.model_extra["hoe"]
    assert used["preference"] == pytest.approx({"helpful": 0.8, "harmless": 0.2})
    assert used["routing"] == tiny_hoe_model.describe_routing([0.8, 0.2])


def test_the_preference_may_be_the_model_name_or_a_list(served):
    client = served.client()
    ask = dict(messages=[{"role": "user", "content": "Name a colour"}], max_tokens=5, temperature=0)
    by_name = client.chat.completions.create(model="hoe:helpful=0.3,harmless=0.7", **ask)
    by_list = client.chat.completions.create(model="hoe", extra_body={"preference": [0.3, 0.7]}, **ask)
    assert by_name.choices[0].message.content == by_list.choices[0].message.content
    assert by_name.model_extra["hoe"]["routing"] == by_list.model_extra["hoe"]["routing"]
    default = client.chat.completions.create(model="hoe", **ask)
    assert default.model_extra["hoe"]["preference"] == {"helpful": 0.5, "harmless": 0.5}


def test_streaming_sends_what_the_whole_answer_holds(served, tiny_hoe_model):
    stream = served.client().chat.completions.create(
        model="hoe",
        messages=[{"role": "user", "content": "Count"}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"preference": [1, 0]},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == alone(tiny_hoe_model, "Count", [1, 0], 8)
    assert chunks[0].choices[0].delta.role == "assistant" and "routing" in chunks[0].model_extra["hoe"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and chunks[-1].usage.completion_tokens <= 8


def test_text_completions(served, tiny_hoe_model):
    reply = served.client().completions.create(
        model="hoe", prompt="The sky is", max_tokens=5, temperature=0, extra_body={"preference": [0.5, 0.5]}
    )
    assert isinstance(reply.choices[0].text, str) and reply.usage.completion_tokens <= 5
    stream = served.client().completions.create(
        model="hoe",
        prompt="The sky is",
        max_tokens=5,
        temperature=0,
        stream=True,
        extra_body={"preference": [0.5, 0.5]},
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == reply.choices[0].text


def test_a_batch_of_mixed_preferences_answers_each_request_as_it_would_be_answered_alone(served, tiny_hoe_model):
    """Twelve concurrent requests with different λ, prompts and lengths share the batch (joining and
    leaving it at token boundaries); greedy, each gets exactly its answer alone."""
    requests = [
        (f"Question number {i} about {'cats' if i % 2 else 'the sea'}", [i / 11, 1 - i / 11], 3 + i % 5)
        for i in range(12)
    ]
    steps_before = served.engine.steps
    answers = ask_together(served.client(), requests)
    assert answers == [alone(tiny_hoe_model, prompt, preference, tokens) for prompt, preference, tokens in requests]
    # batched: far fewer engine steps than one request at a time would take (one prefill + tokens each)
    assert served.engine.steps - steps_before < sum(tokens + 1 for _, _, tokens in requests)


def test_a_seed_reproduces_a_sampled_answer(served):
    ask = dict(model="hoe", messages=[{"role": "user", "content": "Tell me"}], max_tokens=8, temperature=1.0)
    first = served.client().chat.completions.create(seed=7, **ask).choices[0].message.content
    again = served.client().chat.completions.create(seed=7, **ask).choices[0].message.content
    assert first == again


def test_stop_strings_end_the_answer_before_them(served, tiny_hoe_model):
    whole = alone(tiny_hoe_model, "Go on", [0.5, 0.5], 12)
    stop = whole[3:5]
    if not stop.strip():
        pytest.skip("the tiny model's answer has no usable stop string")
    reply = served.client().chat.completions.create(
        model="hoe", messages=[{"role": "user", "content": "Go on"}], max_tokens=12, temperature=0, stop=[stop]
    )
    assert reply.choices[0].message.content == whole[: whole.find(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_models_and_health(served):
    listed = served.client().models.list().data
    assert [m.id for m in listed] == ["hoe"]
    meta = listed[0].model_extra["hoe"]
    assert meta["objectives"] == ["helpful", "harmless"] and meta["experts"] and meta["routers"]
    with urllib.request.urlopen(served.url + "/health") as response:
        assert json.loads(response.read())["status"] == "ok"


CHAT = {"model": "hoe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
BAD = [
    ("malformed-json", b'{"model": "hoe", "messages": [', 400, "not valid JSON"),
    ("preference-length", {**CHAT, "preference": [1, 0, 0]}, 400, "has 3 values"),
    ("preference-negative", {**CHAT, "preference": [-1, 2]}, 400, "non-negative"),
    (
        "preference-nan",
        b'{"model": "hoe", "messages": [{"role": "user", "content": "hi"}], "preference": [NaN, 1]}',
        400,
        "preference",
    ),
    ("preference-unknown-objective", {**CHAT, "preference": {"witty": 1}}, 400, "unknown objective 'witty'"),
    ("preference-zero", {**CHAT, "preference": [0, 0]}, 400, "all zero"),
    ("preference-model-name", {**CHAT, "model": "hoe:helpful=x"}, 400, "preference"),
    ("preference-twice", {**CHAT, "model": "hoe:helpful=1", "preference": [1, 0]}, 400, "given twice"),
    ("max-tokens-zero", {**CHAT, "max_tokens": 0}, 400, "max_tokens"),
    ("max-tokens-negative", {**CHAT, "max_tokens": -3}, 400, "max_tokens"),
    ("max-tokens-over-context", {**CHAT, "max_tokens": 100000}, 400, "context"),
    ("max-tokens-text", {**CHAT, "max_tokens": "many"}, 400, "max_tokens"),
    ("empty-prompt", {**CHAT, "messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
    ("no-messages", {**CHAT, "messages": []}, 400, "messages"),
    ("no-messages-field", {"model": "hoe"}, 400, "messages"),
    ("role-unknown", {**CHAT, "messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
    ("temperature-high", {**CHAT, "temperature": 5}, 400, "temperature"),
    ("top-p-zero", {**CHAT, "top_p": 0}, 400, "top_p"),
    ("n-two", {**CHAT, "n": 2}, 400, "n"),
    ("stop-too-many", {**CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("unknown-field", {**CHAT, "frobnicate": 1}, 400, "unknown field 'frobnicate'"),
    ("penalty", {**CHAT, "frequency_penalty": 0.5}, 400, "frequency_penalty"),
    ("body-not-object", b"[1, 2]", 400, ""),
    ("model-unknown", {**CHAT, "model": "gpt-4"}, 404, "model 'gpt-4' is not served here"),
]


@pytest.mark.parametrize("body, status, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_an_openai_error_naming_the_problem(served, body, status, message):
    code, _, answer = served.post("/v1/chat/completions", body)
    assert code == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and message in error["message"], error
    assert "Traceback" not in json.dumps(answer)


def test_completions_refuse_an_empty_or_several_prompts(served):
    for prompt, message in (("", "empty"), (["a", "b"], "one prompt")):
        code, _, answer = served.post("/v1/completions", {"model": "hoe", "prompt": prompt, "max_tokens": 3})
        assert code == 400 and message in answer["error"]["message"], answer


def test_bad_requests_never_disturb_the_good_ones_beside_them(served, tiny_hoe_model):
    def good(i):
        return served.post("/v1/chat/completions", {**CHAT, "max_tokens": 5, "temperature": 0, "preference": [1, 0]})

    def bad(i):
        return served.post("/v1/chat/completions", {**CHAT, "preference": [-1, 0]})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(good, i) for i in range(4)]
        bads = [pool.submit(bad, i) for i in range(4)]
    expected = alone(tiny_hoe_model, "hi", [1, 0], 5)
    assert all(f.result()[0] == 200 and f.result()[2]["choices"][0]["message"]["content"] == expected for f in goods)
    assert all(f.result()[0] == 400 for f in bads)


def test_an_api_key_guards_every_endpoint_but_health(tiny_hoe_model):
    running = Running(tiny_hoe_model, api_key="sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            running.client("wrong").models.list()
        code, _, answer = running.post("/v1/chat/completions", CHAT)
        assert code == 401 and "API key" in answer["error"]["message"]
        assert running.client("sesame").models.list().data[0].id == "hoe"
        with urllib.request.urlopen(running.url + "/health") as response:
            assert response.status == 200
    finally:
        running.stop()


def test_a_full_queue_is_429_with_retry_after(tiny_hoe_model, monkeypatch):
    """One slot and a one-request queue: while the first request's step is held, the second waits and
    the third is turned away; both accepted requests still finish."""
    release = threading.Event()
    original = Engine._step

    def held(self, newcomers):
        release.wait(30)
        return original(self, newcomers)

    monkeypatch.setattr(Engine, "_step", held)
    running = Running(tiny_hoe_model, max_batch=1, max_queue=1)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(running.post, "/v1/chat/completions", CHAT)
            while running.engine.admitting == 0:
                time.sleep(0.01)
            second = pool.submit(running.post, "/v1/chat/completions", CHAT)
            while not running.engine.waiting:
                time.sleep(0.01)
            code, headers, answer = running.post("/v1/chat/completions", CHAT)
            assert code == 429 and headers.get("retry-after") == "1" and "busy" in answer["error"]["message"]
            release.set()
            assert first.result()[0] == 200 and second.result()[0] == 200
    finally:
        release.set()
        running.stop()


def test_a_client_that_disconnects_mid_stream_frees_its_slot(tiny_hoe_model, monkeypatch):
    original = Engine._step

    def slow(self, newcomers):  # 40 ms a step: the whole answer would take over 2 s
        time.sleep(0.04)
        return original(self, newcomers)

    monkeypatch.setattr(Engine, "_step", slow)
    running = Running(tiny_hoe_model)
    try:
        body = json.dumps({**CHAT, "max_tokens": 50, "stream": True}).encode()
        request = urllib.request.Request(
            running.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        response = urllib.request.urlopen(request, timeout=30)
        assert response.readline().startswith(b"data: ")
        response.close()  # the client goes away after the first chunk
        start = time.monotonic()
        assert wait_idle(running.engine, timeout=5)
        assert time.monotonic() - start < 1.5 and running.engine.steps < 40
    finally:
        running.stop()


def test_serve_without_a_bundle_says_how_to_make_one(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from hoe.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        "error: no --bundle given and no demo bundle at runs/demo/2-objectives/bundle: run `make demo` first, "
        "or pass --bundle"
    ]


def test_hoe_serve_from_the_command_line(bundle_dir):
    """The CLI end to end in its own process: it listens, answers, and stops on SIGINT."""
    import signal
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "hoe.cli", "serve", "--bundle", str(bundle_dir), "--port", str(port)]
    child = subprocess.Popen(command + ["--device", "cpu"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="hoe:helpful=1", messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0
        )
        assert reply.choices[0].message.content is not None
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    assert child.returncode in (0, 130), child.stderr.read()[-2000:]


def test_hoe_serve_decodes_on_the_main_thread_and_drains_on_sigterm(tiny_hoe_model, monkeypatch):
    """`hoe serve`'s loop (`serve_app`): HTTP from a thread, decoding on the calling main thread (where
    torch's OpenMP pool stays fast, see hoe.serving.engine). SIGTERM mid-stream stops the server from
    accepting, lets the running stream finish with every token, then returns."""
    import os
    import signal

    from hoe.serving import engine as engine_module
    from hoe.serving.app import create_app
    from hoe.serving.server import serve_app
    from hoe.serving.settings import ServeSettings

    decoding_threads = set()
    decode = engine_module.Engine._decode

    def slow_decode(self) -> None:  # slow enough that the stream is still running when the signal lands
        decoding_threads.add(threading.current_thread())
        time.sleep(0.05)
        decode(self)

    monkeypatch.setattr(engine_module.Engine, "_decode", slow_decode)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(tiny_hoe_model, ServeSettings(bundle="unused", port=port), engine_thread=False)
    lines: list[str] = []

    def client() -> None:
        body = {"model": "hoe", "prompt": "Once", "max_tokens": 20, "temperature": 0, "stream": True}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        for _ in range(300):
            try:
                response = urllib.request.urlopen(request, timeout=30)
                break
            except OSError:
                time.sleep(0.05)
        with response:
            for raw in response:
                line = raw.decode().strip()
                if line:
                    lines.append(line)
                    if len(lines) == 1:
                        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=client)
    helper.start()
    serve_app(app, "127.0.0.1", port)  # returns once the running stream is done
    helper.join(timeout=30)
    assert lines[-1] == "data: [DONE]" and len(lines) > 3, lines  # tokens kept coming after the signal
    finish = [json.loads(x[6:])["choices"][0]["finish_reason"] for x in lines[:-1] if json.loads(x[6:])["choices"]]
    assert finish[-1] in ("length", "stop")
    assert decoding_threads == {threading.main_thread()}
    assert app.state.server.engine.stopped and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_sigterm_while_the_server_starts_stops_it_gracefully(tiny_hoe_model, monkeypatch):
    """A signal that lands while uvicorn starts (a streaming client may already hold its first chunk then)
    reaches `serve_app`'s handler, which stops the server once it is up; it must never reach the handler
    that was there before, which for `hoe serve` is the default one that kills the process (and once
    killed the whole test run, from the test above)."""
    import os
    import signal

    from hoe.serving import server as server_module
    from hoe.serving.app import create_app
    from hoe.serving.settings import ServeSettings

    def too_early(signum, frame) -> None:
        raise AssertionError("the SIGTERM reached the previous handler: serve_app installs its own too late")

    real = server_module.BackgroundServer

    def signalled_while_starting(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_module, "BackgroundServer", signalled_while_starting)
    app = create_app(tiny_hoe_model, ServeSettings(bundle="unused", port=0), engine_thread=False)
    before = signal.signal(signal.SIGTERM, too_early)
    try:
        server_module.serve_app(app, "127.0.0.1", 0)  # returns: the signal stopped the server once it was up
        assert signal.getsignal(signal.SIGTERM) is too_early and app.state.server.engine.stopped
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_compiled_server_answers_mixed_requests_as_alone_without_compiling_again(tiny_hoe_model):
    """`--compile`: the prefill and decoding graphs are compiled once at start (``warm_up``); requests
    with other preferences, prompts, lengths and batch sizes then reuse them, and each answer (greedy)
    is the request's answer alone through `hoe generate`."""
    from torch._dynamo.utils import counters

    running = Running(tiny_hoe_model, max_batch=8, compile=True)
    try:
        graphs = counters["stats"]["unique_graphs"]
        assert graphs >= 2  # the one-row prefill and the decoding step
        requests = [
            (f"Compiled question {i} on {'cats' if i % 3 else 'rain'}", [i / 9, 1 - i / 9], 3 + i % 4)
            for i in range(10)
        ]
        answers = ask_together(running.client(), requests)
        assert answers == [alone(tiny_hoe_model, prompt, preference, tokens) for prompt, preference, tokens in requests]
        assert ask_together(running.client(), requests[:1]) == answers[:1]  # a lone row (eager) too
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        running.stop()


def test_a_step_that_cannot_compile_is_one_line_at_start(tiny_hoe_model, monkeypatch):
    def no_compiler(function, **options):
        def failing(*args, **kwargs):
            raise RuntimeError("no C++ compiler found\nlong inductor trace")

        return failing

    monkeypatch.setattr("torch.compile", no_compiler)
    with pytest.raises(HoEError, match=r"^compiling the decoding step failed: RuntimeError: no C\+\+ compiler found$"):
        Engine(tiny_hoe_model, thread=False, compile=True)


def test_hoe_serve_compile_reaches_the_server_settings(bundle_dir, monkeypatch):
    """`--compile` on the command line is the settings' `compile` (which the engine gets), said at start."""
    from typer.testing import CliRunner

    from hoe.cli import app

    seen = {}
    monkeypatch.setattr("hoe.serving.server.serve", lambda settings: seen.update(settings=settings))
    result = CliRunner().invoke(app, ["serve", "--bundle", str(bundle_dir), "--device", "cpu", "--compile"])
    assert result.exit_code == 0, result.output
    assert seen["settings"].compile is True
    assert "compiling the decoding step first" in result.output
    CliRunner().invoke(app, ["serve", "--bundle", str(bundle_dir), "--device", "cpu"])
    assert seen["settings"].compile is False
