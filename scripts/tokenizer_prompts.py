"""Shared prompt set for the tokenizer golden generators (scripts/golden-*.py)."""

LONG_PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. It's a sentence that contains every letter of the "
    "English alphabet, and it's been used for decades to test typewriters, fonts and keyboards. "
    "In 1885, The Michigan School Moderator mentioned it; by the 1900s it was everywhere! "
    "Today, engineers still type it (again and again) when they're checking that a tokenizer "
    "doesn't mangle spaces,   punctuation... or numbers like 3.14159, 2,718 and 1234567890.\n\n"
    "Second paragraph:\tcafé, naïve, coöperate — “smart quotes” and ‘single ones’ too.\n"
)

PYTHON_CODE = (
    "def fib(n: int) -> int:\n"
    "    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
    "    a, b = 0, 1\n"
    "    for _ in range(n):\n"
    "        a, b = b, a + b\n"
    "    return a\n"
    "\n"
    "if __name__ == '__main__':\n"
    "\tprint([fib(i) for i in range(10)])  # tabs & spaces\n"
)

JSON_CODE = (
    "{\n"
    "  \"name\": \"shard\",\n"
    "  \"version\": 1.0,\n"
    "  \"tags\": [\"llm\", \"swift\", \"gguf\"],\n"
    "  \"nested\": {\n"
    "    \"ok\": true,\n"
    "    \"count\": 42\n"
    "  }\n"
    "}"
)

PROMPTS = [
    "",
    " ",
    "  ",
    "Hello world",
    "Hello, world!",
    " Hello world",
    "Hello world ",
    "  leading two spaces",
    "trailing three spaces   ",
    "multiple    spaces   inside",
    "tab\tseparated\t\tvalues",
    "line one\nline two",
    "para one\n\npara two",
    "windows\r\nline\r\nendings",
    "\n",
    "\n\n\n",
    " \n \n",
    "1 12 123 1234 1234567",
    "pi is 3.14 and e is 2.718",
    "Numbers: 0, 10, 100, 1000, 10000!",
    "Punctuation: !?.,;:-_()[]{}<>/\\|@#$%^&*+=~`",
    "...!!!???",
    "It's, don't, we're, you'll, I've, I'm, he'd",
    "IT'S DON'T WE'RE YOU'LL I'VE",
    "\"double quotes\" and 'single quotes'",
    "café naïve résumé über Straße",
    "Ελληνικά κείμενο",
    "русский текст",
    "中文测试",
    "日本語のテキスト",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "emoji 😀🎉🚀",
    "family 👨‍👩‍👧‍👦 and 👍🏽 thumbs",
    "flags 🇫🇷🇯🇵",
    "mixed: abc中文123😀def",
    PYTHON_CODE,
    JSON_CODE,
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos",
    "text <end_of_turn> more",
    "<|endoftext|>",
    "<unk> <pad> <eos>",
    "non-breaking\u00a0space and\u2003em space",
    "zero\u200bwidth",
    LONG_PARAGRAPH,
]


def fuzz_prompts(n=120, seed=1234):
    """Deterministic random strings mixing the character classes the splitters care about, including
    special-token texts, combining marks, odd whitespace and code points newer than llama.cpp's Unicode 15.1
    tables (U+1C89, U+A7CB: assigned in Unicode 16)."""
    import random
    rnd = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", "     ", "\n\n\r\t", "!?.,;:'\"-_()[]{}<>/\\|@#$%^&*+=~`",
        "'s 't 're 've 'm 'll 'd 'S 'T 'RE",
        "éüßñçøåÆŒ", "\u0301\u0308\u0327", "ΑβγΔεζ", "абвгдЖЗИ", "中文字符测试", "ひらがなカタカナ", "한국어",
        "مرحبا", "😀🎉🚀👍🏽👨‍👩‍👧", "\u00a0\u2003\u200b\u3000\u0085", "½⅔٣٤٥①", "\u1c89\ua7cb\U0001fae8",
    ]
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
                "<unk>", "</s>", "<table>", "<h1>", "<reponame>", "<fim_pad>"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 12)):
            if rnd.random() < 0.08:
                parts.append(rnd.choice(specials))
            else:
                pool = rnd.choice(pools)
                parts.append("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 6))))
        out.append("".join(parts))
    return out
