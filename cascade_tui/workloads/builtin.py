"""The project's own prompts, used when the packaged datasets (HumanEval, MT-Bench) are not installed.

Written for this project (not copied from any dataset), in the style of the sets they stand in for:
Python to continue for ``code``; short "pull the facts out of this text" requests for
``extraction``; short word problems for ``math``.

``code`` is code only, with no docstrings: the bundled demo models were trained on standard-library
code with docstrings and comments removed, and a prompt ending in a docstring made them stop at once
(EOS, no text). Its first prompts are module boilerplate the demo drafter predicts for long
stretches (where speculation pays on the grown demo target); ``extraction`` and ``math`` are prose,
on which the demo pair writes Python-looking text and disagrees about half the time (where it does
not). Every prompt here produces text on the demo pair (``tests/test_demo_grow.py``).
"""

from __future__ import annotations

CODE: tuple[str, ...] = (
    # module boilerplate whose continuation is predictable (every stdlib codec module has it): the
    # case where a drafter agrees for long stretches and speculation pays
    "import codecs\n\n\nclass Codec(codecs.Codec):",
    "class IncrementalDecoder(codecs.IncrementalDecoder):\n\n    def decode(self, input, final=False):",
    "class StreamReader(Codec, codecs.StreamReader):",
    # a class whose next method follows the ones before it
    "class Stack:\n\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n"
    "        self.items.append(item)\n\n    def pop(self):",
    # function headers in HumanEval's spirit, code only
    "def running_mean(values: list[float], window: int) -> list[float]:",
    "def is_palindrome(text: str) -> bool:",
    "def chunk(items: list, size: int) -> list[list]:",
    "def count_words(text: str) -> dict[str, int]:",
    "def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:",
    "def parse_duration(text: str) -> int:",
    "class LRUCache:\n\n    def __init__(self, capacity: int) -> None:",
    "def flatten(nested: list) -> list:",
)

EXTRACTION: tuple[str, ...] = (
    "From the following note, list every person mentioned with their role, one per line as "
    "'name: role'.\n\nNote: At Monday's meeting Dana Ortiz (project lead) asked Sam Lee, the new "
    "data engineer, to review the pipeline. Priya Nair from finance approved the budget.",
    "Extract the product name, price and release date from this text and answer in JSON with the "
    "keys product, price_usd and released.\n\nText: The Nimbus 4 headphones go on sale on 3 March "
    "2025 for $149, a drop of $30 from the previous model.",
    "Read the review below and return the overall sentiment (positive, negative or mixed) and the "
    "two aspects the reviewer mentions most.\n\nReview: The battery lasts for days and the screen is "
    "bright, but the battery takes four hours to charge and the case scratches easily.",
    "List the cities and the year each one is associated with in this paragraph, as a table with "
    "the columns city and year.\n\nParagraph: The company was founded in Lyon in 1998, opened an "
    "office in Montreal in 2004 and moved its headquarters to Singapore in 2016.",
    "Identify all dates in the following email and convert each to the ISO format YYYY-MM-DD.\n\n"
    "Email: The kickoff is on the 5th of June 2024, the first review on July 12, 2024, and the "
    "final delivery is due 30/09/2024.",
    "Pull out every error code and the component it belongs to from this log excerpt.\n\n"
    "Log: [db] E1042 connection refused; [api] E2001 timeout after 30 s; [db] E1042 connection "
    "refused; [cache] W310 eviction storm",
    "Extract the ingredients and their quantities from this recipe step as a bulleted list.\n\n"
    "Step: Whisk 200 g of flour with 2 eggs, add 300 ml of milk little by little, then a pinch of "
    "salt and 1 tablespoon of melted butter.",
    "Given the job ad below, extract the job title, the location, whether remote work is allowed, "
    "and the required years of experience.\n\nAd: Senior Backend Engineer, Berlin (hybrid, two "
    "office days a week). You bring 5+ years of experience with Python or Go.",
)

MATH: tuple[str, ...] = (
    "A train leaves at 09:40 and arrives at 13:15. How long is the journey in minutes? Show your "
    "reasoning.",
    "The sum of three consecutive integers is 96. What are the integers?",
    "A shop sells pencils at 3 for $1.20. How much do 14 pencils cost?",
    "Solve for x: 5x - 7 = 2x + 11.",
    "A rectangle has a perimeter of 46 cm and its length is 5 cm more than its width. What is its "
    "area?",
    "What is the probability of getting at least one six when rolling two fair dice?",
    "If 8 workers build a wall in 15 days, how many days do 12 workers need at the same pace?",
    "Find the greatest common divisor of 252 and 198, and explain each step.",
)

BUILTIN: dict[str, tuple[str, ...]] = {"code": CODE, "extraction": EXTRACTION, "math": MATH}
