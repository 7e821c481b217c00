"""An "oracle" language model that answers textclust's prompts from gold labels.

Plugged into :class:`tests.llm_server.ScriptedServer`, it reads the prompts exactly as a
real model would receive them (the goal, the numbered explanations, the JSON data block)
and answers from a table text → gold label:

* **propose**: one explanation per gold label among the sample texts (most frequent
  first, at most the number asked for), named after the label (its first six words, as
  textclust keeps names) and worded as ``describe(label)`` (default: the whole label);
* **assign**: for each text, the checked explanations that stand for the text's label
  (recognised by their explanation, else by their name);
* **review** (the prompt says "Review the candidate explanations"): keeps every candidate
  (its proposals are one per label: nothing to reject or merge).

Texts are looked up by their whole normalised text (a text cut with "…" in a prompt, by
what was kept), so distinct texts that share a beginning keep their own labels.

It measures the *mechanics* of the language-model stage (calls, tokens, whether sampling,
prefiltering, batching and selection can recover a partition), not a model's
intelligence. ``error_rate`` makes it answer wrongly for that share of texts (a
different checked explanation, or none), deterministically per text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

from textclust.ingest import normalize_text

from .llm_server import chat_completion, user_prompt

OPEN_MARKER, CLOSE_MARKER = "<<<TEXTS", "TEXTS>>>"
MAX_NAME_WORDS = 6  # textclust cuts proposed names to six words (propose_llm.MAX_NAME_WORDS)
PREFIX_CHARS = 80  # texts may be cut ("…") in prompts: those are looked up by their beginning
_CANDIDATE_LINE = re.compile(r"^(\d+)\. (.+?): (.*)$")
_ASKED = re.compile(r"Propose up to (\d+) explanations")
REVIEW_MARKER = "Review the candidate explanations"
# A reviewed candidate's line: "N. name: explanation [closest …]".
_REVIEWED_LINE = re.compile(r"^(\d+)\. (.+?): (.*) \[closest [^\]]*\]$")


def label_name(label) -> str:
    return " ".join(str(label).replace("_", " ").split())


def short_name(label) -> str:
    """The label's name as textclust keeps it: at most six words (longer names are cut)."""
    return " ".join(label_name(label).split()[:MAX_NAME_WORDS])


def data_items(prompt: str) -> list[dict]:
    """The JSON objects of the prompt's data block (textclust escapes < and > as \\u003c/\\u003e)."""
    lines = prompt.split("\n")
    start = lines.index(OPEN_MARKER)
    end = lines.index(CLOSE_MARKER, start)
    return [json.loads(line) for line in lines[start + 1:end]]


def reviewed_numbers(prompt: str) -> list[int]:
    """The numbers of the candidates a review prompt asks about."""
    head = prompt.split(OPEN_MARKER)[0]
    return [int(m.group(1)) for line in head.split("\n") if (m := _REVIEWED_LINE.match(line))]


def tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class Oracle:
    """``handler(request)`` for :class:`ScriptedServer`; ``texts`` and ``labels`` are parallel."""

    def __init__(self, texts: list[str], labels: list, error_rate: float = 0.0, seed: int = 0,
                 describe=label_name):
        votes: dict[str, Counter] = {}
        for text, label in zip(texts, labels):
            text = normalize_text(text)
            if text and label is not None and str(label).strip():
                votes.setdefault(text, Counter())[str(label)] += 1
        # A text listed under several labels gets its most frequent one (ties: first seen).
        # Keyed by the whole normalised text: distinct texts that share a beginning (e.g.
        # paraphrases in syngoalex) keep their own labels.
        self.gold = {text: counts.most_common(1)[0][0] for text, counts in votes.items()}
        self._by_prefix: dict[str, list[str]] = {}  # for texts cut in prompts
        for text in self.gold:
            self._by_prefix.setdefault(self._key(text), []).append(text)
        self.error_rate = error_rate
        self.seed = seed
        self.describe = describe
        # A candidate in an assign prompt is recognised by its explanation (the label's
        # description), else by its name (the label's short name).
        self._by_candidate: dict[str, str] = {}
        for label in sorted(set(self.gold.values())):
            self._by_candidate.setdefault("name:" + short_name(label).lower(), label)
            self._by_candidate["text:" + " ".join(str(describe(label)).split()).lower()] = label
        self.requests = {"propose": 0, "assign": 0, "review": 0, "other": 0}
        self.unknown_texts = 0

    @staticmethod
    def _key(text: str) -> str:
        return text.rstrip("…")[:PREFIX_CHARS]

    def known_text(self, text: str) -> str | None:
        """The known (whole, normalised) text a prompt's text stands for: itself, else (a text
        cut with "…" in the prompt) the first known text that begins with what was kept."""
        if text in self.gold:
            return text
        if text.endswith("…"):
            kept = text[:-1]
            pool = self._by_prefix.get(self._key(kept), []) if len(kept) >= PREFIX_CHARS else self.gold
            return next((t for t in pool if t.startswith(kept)), None)
        return None

    def label_of(self, text: str) -> str | None:
        """The gold label of a prompt's text: exact match, else (a text cut with "…" in the
        prompt) the most frequent label among the known texts that begin with what was kept."""
        label = self.gold.get(text)
        if label is None and text.endswith("…"):
            kept = text[:-1]
            pool = self._by_prefix.get(self._key(kept), []) if len(kept) >= PREFIX_CHARS else self.gold
            labels = Counter(self.gold[t] for t in pool if t.startswith(kept))
            label = labels.most_common(1)[0][0] if labels else None
        if label is None:
            self.unknown_texts += 1
        return label

    def label_of_candidate(self, name: str, explanation: str) -> str | None:
        """The gold label an explanation stands for (None: not one the oracle proposed)."""
        return (self._by_candidate.get("text:" + " ".join(explanation.split()).lower())
                or self._by_candidate.get("name:" + " ".join(name.split()).lower()))

    def candidate_labels(self, prompt: str) -> dict[int, str]:
        """Candidate number → gold label, for the numbered explanations of an assign prompt."""
        out: dict[int, str] = {}
        for line in prompt.split(OPEN_MARKER)[0].split("\n"):
            match = _CANDIDATE_LINE.match(line)
            if match:
                label = self.label_of_candidate(match.group(2), match.group(3))
                if label is not None:
                    out[int(match.group(1))] = label
        return out

    def __call__(self, request: dict):
        prompt = user_prompt(request)
        messages = request["body"].get("messages", [])
        prompt_tokens = sum(tokens(m.get("content") or "") for m in messages)
        if "Propose up to" in prompt:
            self.requests["propose"] += 1
            answer = self._propose(prompt)
        elif "\nExplanations:\n" in prompt:
            self.requests["assign"] += 1
            answer = self._assign(prompt)
        elif REVIEW_MARKER in prompt:
            self.requests["review"] += 1
            answer = {"decisions": [{"candidate": n, "action": "keep", "into": 0, "reason": "specific"}
                                    for n in reviewed_numbers(prompt)]}
        else:
            self.requests["other"] += 1
            answer = {"error": "the oracle does not know this prompt"}
        content = json.dumps(answer, ensure_ascii=False)
        return chat_completion(content, prompt_tokens=prompt_tokens, completion_tokens=tokens(content),
                               model="oracle")

    def _propose(self, prompt: str) -> dict:
        asked = int(_ASKED.search(prompt).group(1))
        labels = Counter(label for item in data_items(prompt) if (label := self.label_of(item["text"])))
        return {"explanations": [{"name": short_name(label), "explanation": self.describe(label)}
                                 for label, _ in labels.most_common(asked)]}

    def _assign(self, prompt: str) -> dict:
        numbers = self.candidate_labels(prompt)
        results = []
        for item in data_items(prompt):
            label = self.label_of(item["text"])
            right = {n for n, candidate_label in numbers.items() if candidate_label == label} if label else set()
            check = [int(n) for n in item.get("check", [])]
            fits = [n for n in check if n in right]
            if self.error_rate and self._wrong(item["text"]):
                others = [n for n in check if n not in right]
                fits = [self._pick(others, item["text"])] if others else []
            quote = " ".join(item["text"].split()[:5])
            results.append({"id": item["id"], "matches": [{"explanation": n, "evidence": quote} for n in fits]})
        return {"results": results}

    def _draw(self, text: str, salt: str) -> float:
        digest = hashlib.sha256(f"{self.seed}:{salt}:{text}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _wrong(self, text: str) -> bool:
        return self._draw(text, "wrong") < self.error_rate

    def _pick(self, options: list[int], text: str) -> int:
        return options[int(self._draw(text, "pick") * len(options))]
