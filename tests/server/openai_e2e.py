#!/usr/bin/env python3
"""Drives a running `shardctl serve` with the real, unmodified `openai` package, curl and
prometheus_client's text parser. Exits non-zero on the first failed check.

    python3 tests/server/openai_e2e.py --base http://127.0.0.1:8080 [--suite full|basic]

full: models, chat, completions, streaming (= non-streaming text), stop sequences across token
boundaries (streamed and not), logprobs, errors (n=2, wrong type, prompt over the context, bad JSON,
unknown route), raw SSE framing with curl, metrics, and a client disconnect mid-stream that must free
the sequence. basic (for multi-process servers): health with shards, chat, streaming, metrics.
"""
import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

ARGS = None
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)


def get(path):
    try:
        with urllib.request.urlopen(ARGS.base + path, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_healthy(timeout=300):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = get("/health")
            if last[0] == 200:
                return json.loads(last[1])
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    check(False, f"server not healthy within {timeout}s: {last}")


def metrics():
    status, text = get("/metrics")
    check(status == 200, f"/metrics status {status}")
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
            samples[key] = s.value
    return samples


def metric(samples, name, **labels):
    key = name + "".join(f"|{k}={v}" for k, v in sorted(labels.items()))
    return samples.get(key, 0.0)


def client():
    return openai.OpenAI(base_url=ARGS.base + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def chat_messages(text):
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]


def test_models(c):
    models = c.models.list().data
    check(len(models) == 1 and models[0].id, f"one model listed: {models}")
    return models[0].id


def test_chat(c, model):
    r = c.chat.completions.create(model="whatever-name", messages=chat_messages("What is the capital of France?"),
                                  max_tokens=24, temperature=0, seed=1, user="e2e")
    ch = r.choices[0]
    check(r.object == "chat.completion", f"object {r.object}")
    check(r.model == model, f"model {r.model} != {model}")
    check(ch.message.role == "assistant" and isinstance(ch.message.content, str) and ch.message.content, f"content {ch.message}")
    check(ch.finish_reason in ("stop", "length"), f"finish_reason {ch.finish_reason}")
    check(r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 24, f"usage {r.usage}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total_tokens")
    # max_completion_tokens (the newer name) caps like max_tokens
    r2 = c.chat.completions.create(model=model, messages=chat_messages("Count from one to fifty."), max_completion_tokens=5, temperature=0)
    check(r2.usage.completion_tokens == 5 and r2.choices[0].finish_reason == "length", f"max_completion_tokens: {r2.usage}")
    return ch.message.content


def test_completions(c, model):
    a = c.completions.create(model=model, prompt="The capital of France is", max_tokens=12, temperature=0)
    b = c.completions.create(model=model, prompt="The capital of France is", max_tokens=12, temperature=0)
    check(a.object == "text_completion", f"object {a.object}")
    check(a.choices[0].text == b.choices[0].text and a.choices[0].text, f"greedy completions agree: {a.choices[0].text!r}")
    check(a.choices[0].finish_reason == "length" and a.usage.completion_tokens == 12, f"length finish: {a.choices[0].finish_reason} {a.usage}")
    # sampled with a seed: reproducible
    s1 = c.completions.create(model=model, prompt="Once upon a time", max_tokens=16, temperature=1.0, top_p=0.9, seed=42)
    s2 = c.completions.create(model=model, prompt="Once upon a time", max_tokens=16, temperature=1.0, top_p=0.9, seed=42)
    check(s1.choices[0].text == s2.choices[0].text, "same seed, same text")
    # a prompt as token ids
    t = c.completions.create(model=model, prompt=[504, 3575, 282, 4649, 314], max_tokens=4, temperature=0)
    check(t.usage.prompt_tokens == 5, f"token-id prompt: {t.usage}")


def stream_chat(c, messages, **kw):
    chunks = list(c.chat.completions.create(model="x", messages=messages, stream=True, **kw))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    return chunks, text


def test_streaming(c, reference):
    chunks, text = stream_chat(c, chat_messages("What is the capital of France?"), max_tokens=24, temperature=0,
                               stream_options={"include_usage": True})
    check(text == reference, f"streamed text equals the non-streamed text:\n{text!r}\n{reference!r}")
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    check(len(finals) == 1 and finals[0].choices[0].finish_reason in ("stop", "length"), "one finish chunk")
    check(chunks[-1].choices == [] and chunks[-1].usage and chunks[-1].usage.completion_tokens > 0, f"usage chunk last: {chunks[-1]}")
    check(all(ch.usage is None for ch in chunks[:-1]), "usage only in the last chunk")
    check("\ufffd" not in text, "no replacement characters")
    # completions streaming
    parts = list(c.completions.create(model="x", prompt="The capital of France is", max_tokens=12, temperature=0, stream=True))
    streamed = "".join(p.choices[0].text for p in parts if p.choices)
    plain = c.completions.create(model="x", prompt="The capital of France is", max_tokens=12, temperature=0).choices[0].text
    check(streamed == plain, f"streamed completion equals plain: {streamed!r} {plain!r}")
    # multi-byte text: every chunk is whole UTF-8 (the client would show U+FFFD otherwise) and the stream equals the plain text
    msgs = chat_messages("Write the word 'café' and the emoji 🌍🚀 and some Chinese: 你好世界.")
    _, t1 = stream_chat(c, msgs, max_tokens=40, temperature=0)
    t2 = c.chat.completions.create(model="x", messages=msgs, max_tokens=40, temperature=0).choices[0].message.content
    check(t1 == t2, f"multi-byte stream equals plain: {t1!r} {t2!r}")


def test_stop(c):
    prompt = "Here is a list of the days of the week: Monday, Tuesday,"
    full = c.completions.create(model="x", prompt=prompt, max_tokens=30, temperature=0).choices[0].text
    check(len(full) > 12, f"long enough completion: {full!r}")
    # a stop string made of the end of one token and the start of the next ones
    for start, length in ((3, 6), (1, 9), (len(full) // 2, 5)):
        stop = full[start:start + length]
        if not stop.strip():
            continue
        expect = full[:full.index(stop)]
        r = c.completions.create(model="x", prompt=prompt, max_tokens=30, temperature=0, stop=[stop, "@@never@@"])
        check(r.choices[0].text == expect and r.choices[0].finish_reason == "stop",
              f"stop {stop!r}: got {r.choices[0].text!r} ({r.choices[0].finish_reason}), want {expect!r}")
        parts = list(c.completions.create(model="x", prompt=prompt, max_tokens=30, temperature=0, stop=stop, stream=True))
        streamed = "".join(p.choices[0].text for p in parts if p.choices)
        check(streamed == expect, f"streamed stop {stop!r}: got {streamed!r}, want {expect!r}")
        check(not any(stop in p.choices[0].text for p in parts if p.choices), "no chunk contains the stop string")
    # a stop string that never occurs changes nothing
    r = c.completions.create(model="x", prompt=prompt, max_tokens=30, temperature=0, stop="@@never@@")
    check(r.choices[0].text == full and r.choices[0].finish_reason == "length", "unmatched stop")


def test_logprobs(c):
    r = c.chat.completions.create(model="x", messages=chat_messages("Say hello."), max_tokens=6, temperature=0,
                                  logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens, f"one logprob per token: {len(content)} vs {r.usage.completion_tokens}")
    for tok in content:
        check(tok.logprob <= 0 and len(tok.top_logprobs) == 3, f"logprob entry {tok}")
        check(abs(tok.top_logprobs[0].logprob - tok.logprob) < 1e-4, "greedy token is the most likely")
    r = c.completions.create(model="x", prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    check(len(lp.tokens) == 4 and len(lp.token_logprobs) == 4 and all(len(t) == 2 for t in lp.top_logprobs), f"completion logprobs {lp}")
    check("".join(lp.tokens) == r.choices[0].text, "logprob tokens spell the text")


def expect_error(fn, status, param=None, contains=None):
    try:
        fn()
    except openai.APIStatusError as e:
        check(e.status_code == status, f"status {e.status_code}, want {status}: {e}")
        body = e.body or {}
        check(isinstance(body, dict) and "message" in body and "type" in body, f"OpenAI error shape: {e.body}")
        if param:
            check(body.get("param") == param, f"param {body.get('param')}, want {param}")
        if contains:
            check(contains in body["message"], f"message {body['message']!r} lacks {contains!r}")
        return body
    check(False, "expected an error")


def test_errors(c):
    expect_error(lambda: c.chat.completions.create(model="x", messages=chat_messages("hi"), n=2), 400, param="n")
    expect_error(lambda: c.chat.completions.create(model="x", messages=chat_messages("hi"), max_tokens="ten"), 400, param="max_tokens")
    expect_error(lambda: c.chat.completions.create(model="x", messages=chat_messages("hi"), temperature=5), 400, param="temperature")
    expect_error(lambda: c.chat.completions.create(model="x", messages="hi"), 400, param="messages")
    body = expect_error(lambda: c.completions.create(model="x", prompt="hello " * 5000, max_tokens=4), 400, param="prompt",
                        contains="maximum context length")
    check(any(ch.isdigit() for ch in body["message"]), "the context error gives the numbers")
    # unknown fields are ignored
    r = c.chat.completions.create(model="x", messages=chat_messages("hi"), max_tokens=2, extra_body={"no_such_field": [1, {"a": 2}]})
    check(r.usage.completion_tokens <= 2, "unknown fields ignored")
    # raw bodies
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", ARGS.base + "/v1/chat/completions",
                          "-H", "Content-Type: application/json", "-d", '{"messages": [{"role": "user", "content": "hi"}'],
                         capture_output=True, text=True, timeout=60)
    body, code = out.stdout.rsplit("\n", 1)
    check(code == "400" and json.loads(body)["error"]["type"] == "invalid_request_error", f"bad JSON: {code} {body}")
    big = json.dumps({"prompt": "a" * (5 << 20)})
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", ARGS.base + "/v1/completions",
                          "-H", "Content-Type: application/json", "--data-binary", "@-"],
                         input=big, capture_output=True, text=True, timeout=60)
    body, code = out.stdout.rsplit("\n", 1)
    check(code == "413" and json.loads(body)["error"]["code"] == "request_too_large", f"body over the limit: {code} {body[:200]}")
    status, body = get("/v1/nothing-here")
    check(status == 404 and "error" in json.loads(body), f"unknown route: {status} {body}")


def test_sse_framing():
    req = json.dumps({"model": "x", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8,
                      "stream": True, "temperature": 0})
    out = subprocess.run(["curl", "-sN", "-D", "-", "-X", "POST", ARGS.base + "/v1/chat/completions",
                          "-H", "Content-Type: application/json", "-d", req], capture_output=True, timeout=120)
    raw = out.stdout.decode("utf-8")  # strict: every byte of the stream is valid UTF-8
    head, _, body = raw.partition("\r\n\r\n")
    check("text/event-stream" in head.lower(), f"content type: {head}")
    events = body.split("\n\n")
    check(events[-1] == "", f"stream ends with a blank line: {body[-40:]!r}")
    events = events[:-1]
    check(all(e.startswith("data: ") and "\n" not in e for e in events), f"every event is one data: line: {events}")
    check(events[-1] == "data: [DONE]", f"last event is [DONE]: {events[-1]!r}")
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    check(all(ch["object"] == "chat.completion.chunk" for ch in chunks), "chunk objects")
    check(chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length"), "finish chunk before [DONE]")


def test_metrics(c):
    before = metrics()
    c.chat.completions.create(model="x", messages=chat_messages("Say hello."), max_tokens=5, temperature=0)
    after = metrics()
    moved = lambda name, **l: metric(after, name, **l) - metric(before, name, **l)
    check(moved("shard_requests_total", endpoint="/v1/chat/completions", status="200") == 1, "requests counter moved by 1")
    check(moved("shard_prompt_tokens_total") > 0, "prompt tokens counted")
    check(moved("shard_generation_tokens_total") == 5, "generated tokens counted")
    check(moved("shard_time_to_first_token_seconds_count") == 1, "TTFT histogram observed")
    check(moved("shard_inter_token_latency_seconds_count") == 4, "inter-token latency observed for the other 4 tokens")
    # the engine marks itself idle just after its last event, so give it a moment
    deadline = time.time() + 5
    idle = after
    while (metric(idle, "shard_requests_running") or metric(idle, "shard_queue_length")) and time.time() < deadline:
        time.sleep(0.05)
        idle = metrics()
    check(metric(idle, "shard_requests_running") == 0 and metric(idle, "shard_queue_length") == 0, "idle after the request")
    for name in ("shard_kv_pages_used", "shard_kv_pages_free"):
        check(any(k.split("|")[0] == name for k in after), f"{name} exported")
    if metric(after, "shard_worker_heartbeat_rtt_seconds", shard="0") == 0:
        # shards in the server's own process: their step counters are read at every scrape
        check(moved("shard_worker_steps_total", shard="0") > 0, "in-process shard 0 counted its steps")
        check(metric(after, "shard_worker_step_seconds", shard="0") > 0, "in-process shard 0 step time exported")
        check(metric(after, "shard_worker_up", shard="0") == 1, "in-process shard 0 up")
    return after


def test_disconnect():
    idle = metrics()
    deadline = time.time() + 5
    while metric(idle, "shard_requests_running") and time.time() < deadline:
        time.sleep(0.05)
        idle = metrics()
    host, port = ARGS.base.split("//")[1].split(":")
    limit = 1500
    body = json.dumps({"model": "x", "prompt": "Once upon a time, in a small village,", "max_tokens": limit,
                       "stream": True, "temperature": 0}).encode()
    s = socket.create_connection((host, int(port)), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while got.count(b"data: ") < 5:
        data = s.recv(4096)
        check(data, "stream ended early")
        got += data
        check(got.startswith(b"HTTP/1.1 200"), f"streaming response: {got[:300]!r}")
    running = metric(metrics(), "shard_requests_running")
    check(running == 1, f"one request running mid-stream (got {running})")
    s.close()
    deadline = time.time() + 15
    while time.time() < deadline:
        m = metrics()
        if metric(m, "shard_requests_running") == 0:
            break
        time.sleep(0.2)
    check(metric(m, "shard_requests_running") == 0 and metric(m, "shard_queue_length") == 0, "no request running after the disconnect")
    check(metric(m, "shard_kv_pages_used") == metric(idle, "shard_kv_pages_used"), "KV pages back to idle")
    check(metric(m, "shard_requests_cancelled_total") - metric(idle, "shard_requests_cancelled_total") == 1, "counted as cancelled")
    generated = metric(m, "shard_generation_tokens_total") - metric(idle, "shard_generation_tokens_total")
    check(generated < limit, f"generation stopped early ({generated} tokens)")
    time.sleep(1)
    later = metric(metrics(), "shard_generation_tokens_total") - metric(idle, "shard_generation_tokens_total")
    check(later == generated, "no tokens generated after the cancel")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--suite", default="full", choices=["full", "basic"])
    p.add_argument("--shards", type=int, default=1)
    ARGS = p.parse_args()
    health = wait_healthy()
    check(health["status"] == "ok", f"health {health}")
    c = client()
    model = test_models(c)
    reference = test_chat(c, model)
    test_streaming(c, reference)
    after = test_metrics(c)
    if ARGS.shards > 1:
        check(len(health.get("shards", [])) == ARGS.shards and all(s["ready"] for s in health["shards"]), f"shards in /health: {health}")
        for i in range(ARGS.shards):
            check(metric(after, "shard_worker_up", shard=str(i)) == 1, f"worker {i} up in metrics")
    if ARGS.suite == "full":
        test_completions(c, model)
        test_stop(c)
        test_logprobs(c)
        test_errors(c)
        test_sse_framing()
        test_disconnect()
    print(f"ok: {CHECKS} checks ({ARGS.suite})", flush=True)


if __name__ == "__main__":
    main()
