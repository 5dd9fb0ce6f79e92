"""Write tiny_corpus.txt: the made-up corpus of chapter 2 (run once; the text file is committed).

Sentences are drawn from templates whose slots take words of one kind (animals, colours,
food, people, places, days, numbers), so that words of the same kind appear in the same
contexts. That is all a small embedding needs to learn that "cat" is closer to "dog" than to
"bread": the distributional hypothesis, on a scale that trains in seconds on a CPU.

    python book/data/make_tiny_corpus.py
"""

import random
from pathlib import Path

WORDS = {
    "animal": ["cat", "dog", "horse", "cow", "sheep", "rabbit", "goat", "pig"],
    "colour": ["red", "blue", "green", "yellow", "black", "white", "brown", "grey"],
    "food": ["bread", "cheese", "apples", "soup", "rice", "cake", "eggs", "fish"],
    "person": ["mother", "father", "sister", "brother", "teacher", "farmer", "doctor", "baker"],
    "place": ["garden", "kitchen", "school", "market", "river", "forest", "village", "field"],
    "day": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "number": ["two", "three", "four", "five", "six", "seven", "eight", "nine"],
}

TEMPLATES = [
    "the {animal} sleeps in the {place}",
    "the {colour} {animal} runs to the {place}",
    "my {person} eats {food} in the {place}",
    "on {day} the {person} buys {food} at the {place}",
    "the {person} counts {number} boxes of {food}",
    "on {day} we paint the door {colour}",
    "the {animal} drinks water by the {place}",
    "the {person} and the {person} walk to the {place} on {day}",
    "i like {colour} and {colour}",
    "a {colour} {animal} and a {colour} {animal} play in the {place}",
    "the {person} cooks {food} for {number} people",
    "see you on {day} or {day}",
    "the {person} feeds the {animal} every {day}",
    "we need {number} or {number} eggs and some {food}",
    "her new coat is {colour}",
    "the {animal} is hungry",
    "ask the {person} about the {place}",
]


def sentence(rng: random.Random) -> str:
    template = rng.choice(TEMPLATES)
    while "{" in template:
        start = template.index("{")
        end = template.index("}", start)
        template = template[:start] + rng.choice(WORDS[template[start + 1 : end]]) + template[end + 1 :]
    return template


def main(n_sentences: int = 2000, seed: int = 0) -> None:
    rng = random.Random(seed)
    lines = [sentence(rng) for _ in range(n_sentences)]
    (Path(__file__).parent / "tiny_corpus.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
