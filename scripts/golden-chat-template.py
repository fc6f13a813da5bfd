#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/chat_templates.json: real chat-template strings rendered with jinja2 the way
Hugging Face transformers renders them (sandboxed, trim_blocks, lstrip_blocks), bos_token = "" (the tokenizer
adds BOS itself when encoding with add_special).

Templates: SmolLM2's from its GGUF (tokenizer.chat_template; inserts a default system prompt), plain ChatML
(OpenHermes-2.5), a Qwen2.5-style ChatML with a default system prompt (tools branch removed), Meta Llama 3
Instruct, Google Gemma 3 IT (system folded into the first user turn).

Usage: scripts/golden-chat-template.py [models_dir]   (needs: pip install jinja2 gguf)
"""
import json, os, sys
from pathlib import Path

import gguf
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SHARD_MODELS_DIR", ROOT / "models"))


def gguf_template(path):
    r = gguf.GGUFReader(str(path))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


CHATML_PLAIN = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

QWEN25_STYLE = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant") %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"

GEMMA3 = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "  And 3+3?\n"}],
    [{"role": "system", "content": "Be nice.\n"}, {"role": "user", "content": " héllo 中文 😀 "},
     {"role": "assistant", "content": "\nHi there!  "}, {"role": "user", "content": "Bye"}],
    [{"role": "user", "content": "line1\nline2\n\n  indented"}],
]


def raise_exception(msg):
    raise RuntimeError(msg)


def main():
    templates = {
        "smollm2": gguf_template(MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "chatml": CHATML_PLAIN,
        "qwen25-style": QWEN25_STYLE,
        "llama3": LLAMA3,
        "gemma3": GEMMA3,
    }
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    cases = []
    for name, src in templates.items():
        t = env.from_string(src)
        for msgs in CONVERSATIONS:
            for agp in (True, False):
                out = t.render(messages=msgs, add_generation_prompt=agp, bos_token="", eos_token="")
                cases.append({"template": name, "messages": msgs, "add_generation_prompt": agp, "expected": out})
    doc = {"templates": templates, "cases": cases}
    out = ROOT / "tests" / "golden" / "tokenizer" / "chat_templates.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
