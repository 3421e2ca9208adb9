"""The project's own prompts, used when the packaged datasets (HumanEval, MT-Bench) are not installed.

Written for this project (not copied from any dataset), in the style of the sets they stand in for:
Python function headers with docstrings for ``code``; short "pull the facts out of this text"
requests for ``extraction``; short word problems for ``math``.
"""

from __future__ import annotations

CODE: tuple[str, ...] = (
    'def running_mean(values: list[float], window: int) -> list[float]:\n'
    '    """Return the mean of each full window of ``window`` consecutive values.\n'
    '    >>> running_mean([1.0, 2.0, 3.0, 4.0], 2)\n'
    '    [1.5, 2.5, 3.5]\n'
    '    """\n',
    'def is_palindrome(text: str) -> bool:\n'
    '    """Return True if ``text`` reads the same backwards, ignoring case and non-letters.\n'
    '    >>> is_palindrome("Never odd or even")\n'
    '    True\n'
    '    """\n',
    'def chunk(items: list, size: int) -> list[list]:\n'
    '    """Split ``items`` into lists of ``size`` elements; the last one may be shorter.\n'
    '    >>> chunk([1, 2, 3, 4, 5], 2)\n'
    '    [[1, 2], [3, 4], [5]]\n'
    '    """\n',
    'def count_words(text: str) -> dict[str, int]:\n'
    '    """Count how often each lower-cased word occurs in ``text``.\n'
    '    >>> count_words("a b A")\n'
    "    {'a': 2, 'b': 1}\n"
    '    """\n',
    'def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:\n'
    '    """Merge overlapping closed intervals and return them sorted by start.\n'
    '    >>> merge_intervals([(5, 7), (1, 3), (2, 4)])\n'
    '    [(1, 4), (5, 7)]\n'
    '    """\n',
    'def parse_duration(text: str) -> int:\n'
    '    """Turn a duration such as "1h30m" or "45s" into a number of seconds.\n'
    '    >>> parse_duration("1h30m")\n'
    '    5400\n'
    '    """\n',
    'class LRUCache:\n'
    '    """A mapping that keeps at most ``capacity`` items and forgets the least recently used."""\n'
    '\n'
    '    def __init__(self, capacity: int) -> None:\n',
    'def flatten(nested: list) -> list:\n'
    '    """Return the elements of arbitrarily nested lists in order.\n'
    '    >>> flatten([1, [2, [3, 4]], 5])\n'
    '    [1, 2, 3, 4, 5]\n'
    '    """\n',
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
