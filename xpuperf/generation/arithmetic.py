"""The accuracy gate against a server: a fixed set of GSM8K-style arithmetic word
problems shipped with the repository (data/arithmetic.jsonl), answered greedily,
so that a server that is fast because it is wrong fails.

Two scores (zoo.yaml's ``endpoint_accuracy.method``):

- exact_match: the share of answers whose first number is the problem's answer
  (the prompt asks for the number alone; the first number, not GSM8K's last,
  because a server asked to ignore its end of sequence runs on past it);
- reference: the share of answers whose text equals the served model's own
  greedy text, computed here in fp32 (a tiny model, whose random weights
  answer no arithmetic, is still checked token for token).

The set is generated, not downloaded: ``python -m xpuperf.generation.arithmetic``
writes it again, identically (seeded), from the templates below. Pure: no
xpuperf import, so that the zoo's parser can read PROBLEMS.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

DATA = Path(__file__).parent / "data" / "arithmetic.jsonl"
PROBLEMS = 40  # in DATA; zoo.yaml's endpoint_accuracy.problems is at most this
SEED = 27
NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Farah", "Goran", "Hana", "Ivo", "Juno")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

# (question with {name}, {a}, {b}, {c} and {ab} = a x b; the answer from a, b, c; the
# ranges of a, b, c).
# Each answer is a whole number >= 1, so that an empty or junk reply never scores.
TEMPLATES: tuple[tuple[str, Callable[[int, int, int], int], tuple[range, range, range]], ...] = (
    ("{name} has {a} apples, buys {b} more and gives {c} away. How many apples does {name} "
     "have now?", lambda a, b, c: a + b - c, (range(10, 60), range(5, 40), range(1, 10))),
    ("A box holds {a} pencils. How many pencils are in {b} boxes?",
     lambda a, b, c: a * b, (range(3, 25), range(2, 12), range(1, 2))),
    ("{name} reads {a} pages a day for {b} days, then {c} pages more. How many pages does "
     "{name} read in all?", lambda a, b, c: a * b + c, (range(5, 30), range(2, 9), range(1, 20))),
    ("{name} shares {ab} cookies equally among {b} friends. How many cookies does each friend "
     "get?", lambda a, b, c: a, (range(2, 13), range(2, 10), range(1, 2))),
    ("A train travels {a} km every hour for {b} hours. How many km does it travel?",
     lambda a, b, c: a * b, (range(40, 120), range(2, 7), range(1, 2))),
    ("{name} had {a} dollars, spent {b} dollars on a book and {c} dollars on lunch. How many "
     "dollars are left?", lambda a, b, c: a - b - c, (range(50, 100), range(5, 25), range(5, 20))),
    ("A farm has {a} cows and {b} times as many chickens. How many animals are there in all?",
     lambda a, b, c: a + a * b, (range(3, 20), range(2, 6), range(1, 2))),
    ("{name} runs {a} laps of {b} meters each. How many meters does {name} run?",
     lambda a, b, c: a * b, (range(2, 12), range(100, 500, 50), range(1, 2))),
)


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int

    @property
    def prompt(self) -> str:
        return f"Question: {self.question}\nAnswer with the number only.\nAnswer:"


def generate(count: int = PROBLEMS, seed: int = SEED) -> list[Problem]:
    """``count`` problems, the templates in turn, numbers drawn with ``seed``."""
    rng = random.Random(seed)
    problems = []
    for i in range(count):
        text, answer, ranges = TEMPLATES[i % len(TEMPLATES)]
        a, b, c = (rng.choice(r) for r in ranges)
        problems.append(Problem(text.format(name=rng.choice(NAMES), a=a, b=b, c=c, ab=a * b),
                                answer(a, b, c)))
    return problems


@lru_cache(maxsize=1)
def load() -> tuple[Problem, ...]:
    lines = DATA.read_text(encoding="utf-8").splitlines()
    return tuple(Problem(**json.loads(line)) for line in lines if line.strip())


def first_number(text: str) -> int | float | None:
    """The first number written in ``text`` (commas of thousands dropped), or None."""
    found = _NUMBER.search(text)
    if found is None:
        return None
    value = float(found.group().replace(",", ""))
    return int(value) if value.is_integer() else value


def exact_match(problems: Sequence[Problem], replies: Sequence[str]) -> float:
    """The share of ``replies`` whose first number is their problem's answer."""
    return sum(first_number(r) == p.answer for p, r in zip(problems, replies, strict=True)) \
        / len(problems)


def agreement(references: Sequence[str], replies: Sequence[str]) -> float:
    """The share of ``replies`` equal to their reference text (whitespace at the
    ends aside: servers differ in the space a completion starts with)."""
    return sum(a.strip() == b.strip() for a, b in zip(references, replies, strict=True)) \
        / len(references)


def main() -> None:
    DATA.write_text("".join(json.dumps({"question": p.question, "answer": p.answer}) + "\n"
                            for p in generate()), encoding="utf-8")
    print(f"wrote {PROBLEMS} problems to {DATA}")


if __name__ == "__main__":
    main()
