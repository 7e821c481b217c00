"""A simulated language model that errs the way real instruction-tuned models do.

:class:`RealisticOracle` is the sibling of :class:`tests.oracle.Oracle` (the perfect one):
it reads textclust's real prompts (recognised by the markers documented in
``tests/oracle.py``: "Propose up to", "\\nExplanations:\\n", the numbered candidate lines
``N. name: explanation`` and the ``<<<TEXTS`` … ``TEXTS>>>`` data block) and answers from
the gold labels, but like a real model:

* **propose** — each label is worded by one of several paraphrase templates ("The text is
  about X", "Texts where the writer discusses X", "X-related", …; the name varies too),
  chosen per call. For each label proposal, with ``broad_rate`` a proposal that is too
  broad or off the goal is added after it ("The text expresses an opinion", …), with
  ``merge_rate`` a disjunction of that label and another label of the sample ("X or Y"),
  and with ``dup_rate`` a second paraphrase of the same label (a near-duplicate). A label
  whose explanation the prompt already lists as a current candidate is not proposed again,
  except with ``dup_rate`` (then reworded: a near-duplicate across rounds). At most the
  number asked for is returned (a model that respects the limit spends slots on the bad
  proposals, so later labels may be left out).
* **assign** — the oracle recognises its own wordings through a registry (normalised
  explanation text → :class:`Meaning`), filled as it proposes; an explanation it never
  proposed (a user's candidate) falls back to :class:`Oracle`'s match on the label's name or
  text. The true answer for a (text, explanation) pair: a label's explanation fits the
  texts of that label, a merge fits the texts of either label, a broad explanation fits a
  share of all texts drawn once per explanation between 70% and 95%. Then each judgment is
  wrong with ``error_rate``, drawn per (text, explanation) pair: a true "yes" becomes a
  missed yes, a "no" a false yes (so a text can get an unrelated explanation as well as,
  or instead of, its own). The same pair asked again gets the same answer.
* **review** — (the prompt says "Review the candidate explanations") for each candidate
  under review, by what the oracle knows of its own proposals (the registry; an unknown
  wording is kept): a broad or merged ("X or Y") one is rejected and a near-duplicate (its
  label is named by a candidate listed before it) is merged into that one — each of these
  missed (kept) with ``review_miss_rate``; a specific one is kept, except with
  ``review_error_rate`` when it is wrongly rejected or merged into another candidate. Draws
  are keyed by the prompt and the candidate.
* **format** — each response has, with ``quirk_rate``, one quirk: code fences, prose
  around the JSON, a leading ``<think>`` block, explanation numbers and text ids as
  strings (``"3"``, ``"1"`` for ``"t1"``), or one text missing from the results (the last
  two in assign answers only); and, independently and first, with ``broken_rate`` a broken
  answer (JSON cut off with ``finish_reason`` "length", or a missing colon). A repair
  request (the conversation then holds the assistant's answer and a new user message) is
  answered from the original prompt, with fresh draws for its format.

Every draw is ``sha256(seed:salt:key)`` as in :meth:`Oracle._draw`, keyed by the prompt (for a
response) or by the text and the explanation (for a judgment): same seed, same answers,
whatever the order or concurrency of the requests.

**Adding a behaviour in a subclass** (the hooks):

* ``propose_steps`` — names of methods ``step(ctx, proposals) -> proposals`` run in order
  over the list of :class:`Proposed` of one propose call (``ctx`` is a
  :class:`ProposeContext`); add a name and a method to add, drop or reword proposals;
* ``truth(text, label, meaning, key)`` — the correct answer for a pair; override for a new
  :class:`Meaning` kind (register it with :meth:`remember`);
* ``judge(text, key, truth)`` — the answer given (the error model);
* ``quirk_kinds`` / ``broken_kinds`` — names of methods ``quirk_<kind>(answer, stage, key)``
  and ``broken_<kind>(content, key)`` returning the content (and, for broken ones, the
  finish reason); ``quirk_applies(kind, stage, answer)`` says where a quirk can occur;
* ``answer_other(prompt)`` — the answer to a prompt that is neither propose nor assign.

``self.stats`` counts what it did (for benches and tests): proposals by kind, judgments and
wrong ones by kind, quirks and broken answers by kind, repairs answered.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field

from .llm_server import chat_completion
from .oracle import _ASKED, _REVIEWED_LINE, OPEN_MARKER, REVIEW_MARKER, Oracle, data_items, label_name, tokens

# A proposal's name is cut to six words by textclust (propose_llm.MAX_NAME_WORDS), so the
# registry keys names the same way.
MAX_NAME_WORDS = 6

EXPLANATION_TEMPLATES = (
    "The text is about {x}",
    "Texts where the writer discusses {x}",
    "{X}-related",
    "The writer talks about {x}",
    "The text concerns {x}",
    "Mentions of {x}",
)
NAME_TEMPLATES = ("{X}", "About {x}", "{X} texts", "{X} discussion", "Mentions {x}")
MERGE_TEMPLATES = (
    ("{A} or {B}", "The text is about {a} or {b}"),
    ("{A} and {B}", "Texts where the writer discusses either {a} or {b}"),
)
# Too broad or off the goal: true of most texts whatever the goal.
BROAD = (
    ("Expresses an opinion", "The text expresses an opinion"),
    ("Asks a question", "The text asks a question"),
    ("General statements", "General statements"),
    ("Personal experience", "The writer describes a personal experience"),
    ("Mentions a problem", "The writer mentions a problem or a difficulty"),
    ("Informal tone", "The text is written in an informal tone"),
)
BROAD_SHARE = (0.70, 0.95)  # a broad explanation is judged true of this share of texts (drawn per explanation)
REVIEW_REASONS = {"keep": "specific to the goal", "reject": "too broad or a disjunction",
                  "merge": "says the same as another"}
PROSE_BEFORE = ("Here is the JSON you asked for:\n", "Sure! Based on the texts, here is my answer.\n\n")
PROSE_AFTER = ("\n\nLet me know if you need anything else.", "\n\nI hope this helps.")
THINK = "<think>\nLet me read the texts one by one and check each explanation against the goal.\n</think>\n"
# A candidate listed in a prompt before the data block: "3. name: text" or "- name: text".
_LISTED = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?): (.+)$")


def normalised(text: str) -> str:
    return " ".join(str(text).split()).lower()


def name_key(name: str) -> str:
    return normalised(" ".join(str(name).split()[:MAX_NAME_WORDS]))


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Meaning:
    """What an explanation stands for: ``kind`` "label" (one gold label), "merge" (either
    of two labels) or "broad" (no label: true of most texts). Subclasses may add kinds."""

    kind: str
    labels: tuple = ()


@dataclass
class Proposed:
    name: str
    text: str
    meaning: Meaning
    kind: str  # what the stats count it as: "label", "broad", "merge", "dup" (or a subclass's kind)


@dataclass
class ProposeContext:
    prompt: str
    key: str  # digest of the prompt: every draw of the call is keyed by it
    asked: int
    labels: list  # the sample's gold labels, most frequent first
    existing: set = field(default_factory=set)  # meanings of the candidates the prompt lists


class RealisticOracle(Oracle):
    """``handler(request)`` for :class:`ScriptedServer`: the gold labels, answered like a real model."""

    propose_steps = ("paraphrase_labels", "add_broad", "add_merges", "add_duplicates")
    quirk_kinds = ("fence", "prose", "think", "string_ids", "missing_text")
    broken_kinds = ("truncated", "syntax")
    model_name = "oracle-realistic"

    def __init__(self, texts: list[str], labels: list, error_rate: float = 0.08, seed: int = 0,
                 describe=label_name, *, broad_rate: float = 0.15, merge_rate: float = 0.10,
                 dup_rate: float = 0.10, quirk_rate: float = 0.2, broken_rate: float = 0.03,
                 review_miss_rate: float = 0.2, review_error_rate: float = 0.05):
        super().__init__(texts, labels, error_rate=error_rate, seed=seed, describe=describe)
        self.broad_rate = broad_rate
        self.merge_rate = merge_rate
        self.dup_rate = dup_rate
        self.quirk_rate = quirk_rate
        self.broken_rate = broken_rate
        self.review_miss_rate = review_miss_rate
        self.review_error_rate = review_error_rate
        self.meanings: dict[str, Meaning] = {}  # normalised explanation text → meaning
        self.meanings_by_name: dict[str, Meaning] = {}  # normalised (cut) name → meaning
        self._lock = threading.Lock()  # the server is threaded; the registry and stats are shared
        self.stats = {
            "responses": 0, "repairs_answered": 0,
            "proposals": Counter(),  # by kind: label, broad, merge, dup
            "judgments": 0, "wrong": 0, "false_yes": 0, "missed_yes": 0,
            "quirks": Counter(), "broken": Counter(),
            "review": Counter(),  # decisions by what they were: right/missed/wrong + action
        }

    # --- the wire -------------------------------------------------------------------------------

    def __call__(self, request: dict):
        messages = request["body"].get("messages", [])
        prompt_tokens = sum(tokens(m.get("content") or "") for m in messages)
        user = [m.get("content") or "" for m in messages if m.get("role") == "user"]
        prompt = next((u for u in user if OPEN_MARKER in u or "Propose up to" in u), user[-1] if user else "")
        repair = any(m.get("role") == "assistant" for m in messages)
        # Response-level draws are keyed by the whole conversation: a repair gets fresh ones.
        key = self._digest("\x00".join(m.get("content") or "" for m in messages))
        with self._lock:
            self.stats["responses"] += 1
            self.stats["repairs_answered"] += repair
            if REVIEW_MARKER in prompt:
                self.requests["review"] += not repair
                stage, answer = "review", self._review(prompt)
            elif "Propose up to" in prompt:
                self.requests["propose"] += not repair
                stage, answer = "propose", self._propose(prompt)
            elif "\nExplanations:\n" in prompt:
                self.requests["assign"] += not repair
                stage, answer = "assign", self._assign(prompt)
            else:
                self.requests["other"] += 1
                stage, answer = "other", self.answer_other(prompt)
            content, finish = self.render(answer, stage, key)
        return chat_completion(content, prompt_tokens=prompt_tokens, completion_tokens=tokens(content),
                               finish_reason=finish, model=self.model_name)

    def answer_other(self, prompt: str) -> dict:
        return {"error": "the oracle does not know this prompt"}

    # --- the registry ---------------------------------------------------------------------------

    def remember(self, proposed: Proposed) -> None:
        self.meanings[normalised(proposed.text)] = proposed.meaning
        self.meanings_by_name.setdefault(name_key(proposed.name), proposed.meaning)

    def meaning_of(self, name: str, explanation: str) -> Meaning | None:
        """What a candidate stands for: one of the oracle's own wordings (by its explanation,
        else its name), else the perfect oracle's match on a label's name or text."""
        meaning = self.meanings.get(normalised(explanation)) or self.meanings_by_name.get(name_key(name))
        if meaning is None:
            label = super().label_of_candidate(name, explanation)
            meaning = Meaning("label", (label,)) if label is not None else None
        return meaning

    def label_of_candidate(self, name: str, explanation: str) -> str | None:
        """The one gold label a candidate stands for (None for a merge, a broad one or unknown)."""
        meaning = self.meaning_of(name, explanation)
        return meaning.labels[0] if meaning is not None and meaning.kind == "label" else None

    def candidate_meanings(self, prompt: str) -> dict[int, tuple[Meaning | None, str]]:
        """Candidate number → (meaning, normalised explanation) for an assign prompt's list."""
        out = {}
        for line in prompt.split(OPEN_MARKER)[0].split("\n"):
            match = re.match(r"^(\d+)\. (.+?): (.*)$", line)
            if match:
                out[int(match.group(1))] = (self.meaning_of(match.group(2), match.group(3)),
                                            normalised(match.group(3)))
        return out

    # --- propose --------------------------------------------------------------------------------

    def _propose(self, prompt: str) -> dict:
        labels = Counter(label for item in data_items(prompt) if (label := self.label_of(item["text"])))
        existing = set()
        for line in prompt.split(OPEN_MARKER)[0].split("\n"):
            match = _LISTED.match(line)
            meaning = self.meaning_of(match.group(1), match.group(2)) if match else None
            if meaning is not None:
                existing.add(meaning)
        ctx = ProposeContext(prompt, self._digest(prompt), int(_ASKED.search(prompt).group(1)),
                             [label for label, _ in labels.most_common()], existing)
        proposals: list[Proposed] = []
        for step in self.propose_steps:
            proposals = getattr(self, step)(ctx, proposals)
        proposals = proposals[:ctx.asked]
        for p in proposals:
            self.remember(p)
            self.stats["proposals"][p.kind] += 1
        return {"explanations": [{"name": p.name, "explanation": p.text} for p in proposals]}

    def paraphrase(self, label: str, key: str, avoid: int | None = None) -> tuple[Proposed, int]:
        """One wording of ``label`` (template drawn by ``key``; ``avoid``: a template not to use)."""
        templates = EXPLANATION_TEMPLATES
        k = self._index(key, "wording:" + label, len(templates))
        if avoid is not None and k == avoid:
            k = (k + 1 + self._index(key, "reword:" + label, len(templates) - 1)) % len(templates)
        x = label_name(label)
        n = NAME_TEMPLATES[self._index(key, "name:" + label, len(NAME_TEMPLATES))]
        name = " ".join(n.format(x=x, X=capitalised(x)).split()[:MAX_NAME_WORDS])
        text = templates[k].format(x=x, X=capitalised(x))
        return Proposed(name, text, Meaning("label", (label,)), "label"), k

    def paraphrase_labels(self, ctx: ProposeContext, proposals: list[Proposed]) -> list[Proposed]:
        """One paraphrase per label of the sample (most frequent first); a label the prompt
        already lists as a candidate only with ``dup_rate`` (a near-duplicate)."""
        out = list(proposals)
        for label in ctx.labels:
            p, _ = self.paraphrase(label, ctx.key)
            if Meaning("label", (label,)) in ctx.existing:
                if self._draw(ctx.key, "again:" + label) >= self.dup_rate:
                    continue
                p.kind = "dup"
            out.append(p)
        return out

    def _after_each_label(self, ctx, proposals, salt: str, rate: float, make) -> list[Proposed]:
        """``proposals`` with, after each label proposal, ``make(p)`` (if not None) with ``rate``."""
        out = []
        for i, p in enumerate(proposals):
            out.append(p)
            if p.kind == "label" and rate and self._draw(ctx.key, f"{salt}:{i}:{p.text}") < rate:
                extra = make(ctx, p, i, out)
                if extra is not None:
                    out.append(extra)
        return out

    def add_broad(self, ctx: ProposeContext, proposals: list[Proposed]) -> list[Proposed]:
        def make(ctx, p, i, so_far):
            used = {q.text for q in so_far}
            options = [b for b in BROAD if b[1] not in used]
            if not options:
                return None
            name, text = options[self._index(ctx.key, f"which-broad:{i}", len(options))]
            return Proposed(name, text, Meaning("broad"), "broad")

        return self._after_each_label(ctx, proposals, "broad", self.broad_rate, make)

    def add_merges(self, ctx: ProposeContext, proposals: list[Proposed]) -> list[Proposed]:
        def make(ctx, p, i, so_far):
            label = p.meaning.labels[0]
            others = [other for other in ctx.labels if other != label]
            if not others:
                return None
            other = others[self._index(ctx.key, f"partner:{i}", len(others))]
            name, text = MERGE_TEMPLATES[self._index(ctx.key, f"merge-wording:{i}", len(MERGE_TEMPLATES))]
            a, b = label_name(label), label_name(other)
            name = " ".join(name.format(A=capitalised(a), B=capitalised(b)).split()[:MAX_NAME_WORDS])
            return Proposed(name, text.format(a=a, b=b), Meaning("merge", (label, other)), "merge")

        return self._after_each_label(ctx, proposals, "merge", self.merge_rate, make)

    def add_duplicates(self, ctx: ProposeContext, proposals: list[Proposed]) -> list[Proposed]:
        def make(ctx, p, i, so_far):
            label = p.meaning.labels[0]
            _, used = self.paraphrase(label, ctx.key)
            again, _ = self.paraphrase(label, ctx.key + f":dup{i}", avoid=used)
            again.kind = "dup"
            return again

        return self._after_each_label(ctx, proposals, "dup", self.dup_rate, make)

    # --- review ---------------------------------------------------------------------------------

    def _review(self, prompt: str) -> dict:
        key = self._digest(prompt)
        head = prompt.split(OPEN_MARKER)[0].split("\n")
        listed, reviewed = [], set()  # (number, meaning) in prompt order; numbers under review
        for line in head:
            match = _REVIEWED_LINE.match(line) or re.match(r"^(\d+)\. (.+?): (.*)$", line)
            if match:
                listed.append((int(match.group(1)), self.meaning_of(match.group(2), match.group(3))))
                if _REVIEWED_LINE.match(line):
                    reviewed.add(int(match.group(1)))
        decisions, kept = [], []  # kept: (number, meaning) of the candidates that stay, in order
        for number, meaning in listed:
            if number not in reviewed:
                kept.append((number, meaning))
                continue
            salt = f"review:{number}"
            same = next((n for n, m in kept if meaning is not None and meaning.kind == "label" and m == meaning), None)
            if meaning is not None and meaning.kind in ("broad", "merge"):
                right = ("reject", 0)
            elif same is not None:
                right = ("merge", same)
            else:
                right = ("keep", 0)
            action, into = right
            if right[0] != "keep" and self._draw(key, salt + ":miss") < self.review_miss_rate:
                action, into, how = "keep", 0, "missed"
            elif right[0] == "keep" and self._draw(key, salt + ":error") < self.review_error_rate:
                others = [n for n, _ in kept]
                if others and self._draw(key, salt + ":how") < 0.5:
                    action, into = "merge", others[self._index(key, salt + ":into", len(others))]
                else:
                    action, into = "reject", 0
                how = "wrong"
            else:
                how = "right"
            self.stats["review"][f"{how} {action}"] += 1
            if action == "keep":
                kept.append((number, meaning))
            decisions.append({"candidate": number, "action": action, "into": into, "reason": REVIEW_REASONS[action]})
        return {"decisions": decisions}

    # --- assign ---------------------------------------------------------------------------------

    def _assign(self, prompt: str) -> dict:
        numbers = self.candidate_meanings(prompt)
        results = []
        for item in data_items(prompt):
            label = self.label_of(item["text"])
            fits = []
            for n in (int(n) for n in item.get("check", [])):
                meaning, key = numbers.get(n, (None, ""))
                if self.judge(item["text"], key, self.truth(item["text"], label, meaning, key)):
                    fits.append(n)
            quote = " ".join(item["text"].split()[:5])
            results.append({"id": item["id"], "matches": [{"explanation": n, "evidence": quote} for n in fits]})
        return {"results": results}

    def truth(self, text: str, label: str | None, meaning: Meaning | None, key: str) -> bool:
        """Whether the explanation (``key``: its normalised text) is really true of the text."""
        if meaning is None:
            return False
        if meaning.kind == "broad":
            low, high = BROAD_SHARE
            share = low + (high - low) * self._draw(key, "broad-share")
            return self._draw(f"{key}\x00{text}", "broad") < share
        return label is not None and label in meaning.labels

    def judge(self, text: str, key: str, truth: bool) -> bool:
        """The answer given for a pair: wrong with ``error_rate``, drawn per (text, explanation)."""
        self.stats["judgments"] += 1
        if self.error_rate and self._draw(f"{key}\x00{text}", "wrong") < self.error_rate:
            self.stats["wrong"] += 1
            self.stats["missed_yes" if truth else "false_yes"] += 1
            return not truth
        return truth

    # --- format ---------------------------------------------------------------------------------

    def render(self, answer: dict, stage: str, key: str) -> tuple[str, str]:
        """The response's content and finish reason: clean JSON, or with a quirk, or broken."""
        if stage != "other" and self.broken_rate and self._draw(key, "broken") < self.broken_rate:
            kind = self.broken_kinds[self._index(key, "broken-kind", len(self.broken_kinds))]
            self.stats["broken"][kind] += 1
            return getattr(self, "broken_" + kind)(json.dumps(answer, ensure_ascii=False), key)
        if stage != "other" and self.quirk_rate and self._draw(key, "quirk") < self.quirk_rate:
            kinds = [k for k in self.quirk_kinds if self.quirk_applies(k, stage, answer)]
            if kinds:
                kind = kinds[self._index(key, "quirk-kind", len(kinds))]
                self.stats["quirks"][kind] += 1
                return getattr(self, "quirk_" + kind)(answer, stage, key), "stop"
        return json.dumps(answer, ensure_ascii=False), "stop"

    def quirk_applies(self, kind: str, stage: str, answer: dict) -> bool:
        if kind == "string_ids":
            return stage == "assign"
        if kind == "missing_text":
            return stage == "assign" and len(answer.get("results", [])) >= 2
        return True

    def quirk_fence(self, answer, stage, key) -> str:
        return "```json\n" + json.dumps(answer, ensure_ascii=False, indent=2) + "\n```"

    def quirk_prose(self, answer, stage, key) -> str:
        before = PROSE_BEFORE[self._index(key, "prose-before", len(PROSE_BEFORE))]
        after = PROSE_AFTER[self._index(key, "prose-after", len(PROSE_AFTER))]
        return before + json.dumps(answer, ensure_ascii=False) + after

    def quirk_think(self, answer, stage, key) -> str:
        return THINK + json.dumps(answer, ensure_ascii=False)

    def quirk_string_ids(self, answer, stage, key) -> str:
        results = [{"id": str(r["id"]).lstrip("t"),
                    "matches": [{**m, "explanation": str(m["explanation"])} for m in r["matches"]]}
                   for r in answer["results"]]
        return json.dumps({"results": results}, ensure_ascii=False)

    def quirk_missing_text(self, answer, stage, key) -> str:
        results = list(answer["results"])
        del results[self._index(key, "missing", len(results))]
        return json.dumps({"results": results}, ensure_ascii=False)

    def broken_truncated(self, content: str, key: str) -> tuple[str, str]:
        """Cut off mid-answer, as at the output-token limit."""
        cut = int(len(content) * (0.3 + 0.6 * self._draw(key, "cut")))
        return content[:max(1, cut)], "length"

    def broken_syntax(self, content: str, key: str) -> tuple[str, str]:
        """A key without its colon: not JSON, and no tolerant reading can guess it."""
        return content.replace('": ', '" ', 1), "stop"

    # --- draws ----------------------------------------------------------------------------------

    @staticmethod
    def _digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _index(self, key: str, salt: str, n: int) -> int:
        return min(n - 1, int(self._draw(key, salt) * n))


__all__ = ["RealisticOracle", "Meaning", "Proposed", "ProposeContext", "BROAD", "EXPLANATION_TEMPLATES",
           "NAME_TEMPLATES", "MERGE_TEMPLATES", "normalised"]
