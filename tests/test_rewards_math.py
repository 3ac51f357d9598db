"""Math reward: answer extraction, equivalence (math-verify), think handling, time limits, isolation."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rewards import stats
from rewards.math import extract_answer, math_reward, normalize, too_expensive

B = "\\boxed"

# (gold, completion, expected score); one comment per case says what it checks.
CASES = [
    # -- integers
    ("42", f"{B}{{42}}", 1.0),  # plain integer
    ("42", f"{B}{{43}}", 0.0),  # off by one
    ("0", f"{B}{{0}}", 1.0),  # zero
    ("7", f"{B}{{007}}", 1.0),  # leading zeros
    ("12", f"{B}{{12.0}}", 1.0),  # integer written as a decimal
    ("12", f"{B}{{12.5}}", 0.0),  # a different decimal
    ("100", f"{B}{{ 100 }}", 1.0),  # spaces inside the box
    ("5", f"{B}{{5}}.", 1.0),  # full stop after the box
    ("5", f"$ {B}{{5}} $", 1.0),  # box inside inline math
    ("5", f"\\[{B}{{5}}\\]", 1.0),  # box inside display math
    ("123456789", f"{B}{{123456789}}", 1.0),  # large integer
    ("100000000000000000000", f"{B}{{100000000000000000001}}", 0.0),  # huge integers compared exactly
    ("2", f"{B}{{1+1}}", 1.0),  # arithmetic expression evaluates to the gold
    ("10", f"{B}{{2 \\times 5}}", 1.0),  # \times
    ("3", f"{B}{{\\frac{{6}}{{2}}}}", 1.0),  # fraction that is an integer
    # -- negative numbers
    ("-3", f"{B}{{-3}}", 1.0),  # negative integer
    ("-3", f"{B}{{3}}", 0.0),  # sign dropped
    ("3", f"{B}{{-3}}", 0.0),  # sign added
    ("-0.5", f"{B}{{-\\frac{{1}}{{2}}}}", 1.0),  # negative decimal vs negative fraction
    ("-\\frac{1}{2}", f"{B}{{\\frac{{-1}}{{2}}}}", 1.0),  # minus sign inside the numerator
    ("-\\frac{1}{2}", f"{B}{{- \\dfrac12}}", 1.0),  # \dfrac without braces and a spaced minus
    ("-7", f"{B}{{-(7)}}", 1.0),  # parenthesised negative
    ("-2", "The answer is -2.", 1.0),  # negative number in an answer line
    # -- fractions
    ("\\frac{1}{2}", f"{B}{{\\frac{{1}}{{2}}}}", 1.0),  # identical fraction
    ("\\frac{1}{2}", f"{B}{{\\dfrac{{1}}{{2}}}}", 1.0),  # \dfrac
    ("\\frac{1}{2}", f"{B}{{\\tfrac{{1}}{{2}}}}", 1.0),  # \tfrac
    ("\\frac{1}{2}", f"{B}{{\\frac12}}", 1.0),  # \frac12 shorthand
    ("\\frac{1}{2}", f"{B}{{1/2}}", 1.0),  # slash fraction
    ("\\frac{1}{2}", f"{B}{{2/4}}", 1.0),  # unreduced fraction
    ("\\frac{1}{2}", f"{B}{{0.5}}", 1.0),  # 0.5 vs 1/2 is true
    ("0.5", f"{B}{{\\frac{{1}}{{2}}}}", 1.0),  # and the other way round
    ("\\frac{1}{2}", f"{B}{{2}}", 0.0),  # 1/2 vs 2 is false
    ("2", f"{B}{{\\frac{{1}}{{2}}}}", 0.0),  # 2 vs 1/2 is false
    ("\\frac{3}{4}", f"{B}{{\\frac{{4}}{{3}}}}", 0.0),  # inverted fraction
    ("\\frac{1}{3}", f"{B}{{0.333333}}", 1.0),  # decimal to 6 places matches a third
    ("\\frac{1}{3}", f"{B}{{0.33}}", 0.0),  # too coarse a decimal
    ("\\frac{7}{2}", f"{B}{{3\\frac{{1}}{{2}}}}", 1.0),  # mixed number reads as 3 + 1/2
    ("\\frac{\\sqrt{3}}{2}", f"{B}{{\\frac{{\\sqrt3}}{{2}}}}", 1.0),  # radical in a fraction
    ("\\frac{\\sqrt{2}}{2}", f"{B}{{\\frac{{1}}{{\\sqrt{{2}}}}}}", 1.0),  # rationalised denominator
    # -- decimals
    ("3.14", f"{B}{{3.14}}", 1.0),  # same decimal
    ("3.14", f"{B}{{3.140}}", 1.0),  # trailing zero
    ("3.14", f"{B}{{3.15}}", 0.0),  # different decimal
    ("3.14", f"{B}{{3.14159}}", 0.0),  # more digits is a different number
    ("0.25", f"{B}{{.25}}", 1.0),  # no leading zero
    ("0.25", f"{B}{{\\frac{{1}}{{4}}}}", 1.0),  # decimal vs fraction
    ("2.5", f"{B}{{2,5}}", 0.0),  # decimal comma is not read as 2.5
    ("0.1234567", f"{B}{{0.1234568}}", 1.0),  # equal after rounding to 6 places
    ("1.5", "#### 1.5", 1.0),  # decimal after ####
    ("-1.25", f"{B}{{-\\frac{{5}}{{4}}}}", 1.0),  # negative decimal vs fraction
    # -- percentages
    ("50\\%", f"{B}{{50\\%}}", 1.0),  # identical percentage
    ("50\\%", f"{B}{{50}}", 1.0),  # percent sign omitted
    ("50\\%", f"{B}{{0.5}}", 1.0),  # as a proportion
    ("50", f"{B}{{50\\%}}", 1.0),  # percent sign added
    ("50\\%", f"{B}{{50 \\text{{ percent}}}}", 1.0),  # spelled-out percent
    ("50\\%", f"{B}{{60\\%}}", 0.0),  # wrong percentage
    ("12.5\\%", f"{B}{{12.5\\%}}", 1.0),  # decimal percentage
    ("25\\%", "The answer is 25%.", 1.0),  # percentage in an answer line
    # -- thousands separators
    ("1000", f"{B}{{1,000}}", 1.0),  # comma separator
    ("1000", f"{B}{{1{{,}}000}}", 1.0),  # LaTeX {,} separator
    ("1000", f"{B}{{1\\,000}}", 1.0),  # thin-space separator
    ("1234567", f"{B}{{1,234,567}}", 1.0),  # several groups
    ("1,234", f"{B}{{1234}}", 1.0),  # separator in the gold
    ("1000", f"{B}{{1,001}}", 0.0),  # separated but different
    ("18000", "#### 18,000", 1.0),  # GSM8K style with separator
    # -- sets and tuples
    ("\\{1,2,3\\}", f"{B}{{\\{{3,2,1\\}}}}", 1.0),  # set order does not matter
    ("\\{1,2\\}", f"{B}{{\\{{1,2,3\\}}}}", 0.0),  # extra element
    ("1, 2", f"{B}{{2, 1}}", 1.0),  # comma-separated solutions
    ("\\{-2, 2\\}", f"{B}{{\\pm 2}}", 1.0),  # plus-minus as a set
    ("1, 2", f"{B}{{1}}", 0.0),  # one of two solutions
    ("\\emptyset", f"{B}{{\\emptyset}}", 1.0),  # empty set
    ("\\{\\frac{1}{2}, 3\\}", f"{B}{{\\{{3, 0.5\\}}}}", 1.0),  # elements compared as numbers
    ("x = 1, 2", f"{B}{{1, 2}}", 1.0),  # solutions given with the variable in the gold
    # -- intervals and inequalities
    ("(1, 2]", f"{B}{{(1,2]}}", 1.0),  # half-open interval
    ("(1, 2]", f"{B}{{[1,2)}}", 0.0),  # other ends open
    ("[0, \\infty)", f"{B}{{[0,\\infty)}}", 1.0),  # unbounded interval
    ("(-\\infty, 3)", f"{B}{{(-\\infty, 3)}}", 1.0),  # negative infinity
    ("(-\\infty, 3)", f"{B}{{(-\\infty, 3]}}", 0.0),  # closed instead of open
    ("(-\\infty, 0) \\cup (1, \\infty)", f"{B}{{(-\\infty,0)\\cup(1,\\infty)}}", 1.0),  # union
    ("x < 3", f"{B}{{x<3}}", 1.0),  # inequality
    ("x \\geq 2", f"{B}{{2 \\leq x}}", 1.0),  # flipped inequality
    # -- matrices and vectors
    (
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        f"{B}{{\\begin{{bmatrix}}1&2\\\\3&4\\end{{bmatrix}}}}",
        1.0,
    ),  # pmatrix vs bmatrix
    (
        "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
        f"{B}{{\\begin{{pmatrix}}1&2\\\\4&3\\end{{pmatrix}}}}",
        0.0,
    ),  # swapped entries
    (
        "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
        f"{B}{{\\begin{{pmatrix}}1\\\\2\\end{{pmatrix}}}}",
        1.0,
    ),  # column vector
    (
        "\\begin{pmatrix}0.5&0\\\\0&1\\end{pmatrix}",
        f"{B}{{\\begin{{pmatrix}}\\frac12&0\\\\0&1\\end{{pmatrix}}}}",
        1.0,
    ),  # entries compared numerically
    (
        "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
        f"{B}{{\\begin{{pmatrix}}1&2\\end{{pmatrix}}}}",
        0.0,
    ),  # row vs column vector
    # -- units
    ("5", f"{B}{{5\\text{{ cm}}}}", 1.0),  # unit in \text
    ("5", f"{B}{{5 \\mathrm{{cm}}}}", 1.0),  # unit in \mathrm
    ("10", f"{B}{{10\\text{{ meters}}}}", 1.0),  # long unit name
    ("5", f"{B}{{5\\text{{ cm}}^2}}", 1.0),  # squared unit
    ("30", f"{B}{{30^\\circ}}", 1.0),  # degrees
    ("30", f"{B}{{30^{{\\circ}}}}", 1.0),  # degrees with braces
    ("12", "Answer: 12 apples", 1.0),  # plain unit word after the number
    ("5", f"{B}{{\\$5}}", 1.0),  # dollar sign
    ("5", f"{B}{{6\\text{{ cm}}}}", 0.0),  # wrong number with a unit
    # -- \text{} answers
    ("\\text{Monday}", f"{B}{{\\text{{Monday}}}}", 1.0),  # identical text
    ("\\text{Monday}", f"{B}{{Monday}}", 1.0),  # text without \text
    ("\\text{Monday}", f"{B}{{\\textbf{{Monday}}}}", 1.0),  # bold text
    ("\\text{Monday}", f"{B}{{\\text{{Tuesday}}}}", 0.0),  # different word
    ("\\text{(B)}", f"{B}{{B}}", 1.0),  # multiple choice letter
    ("B", f"{B}{{\\text{{(B)}}}}", 1.0),  # letter in parentheses
    ("B", f"{B}{{C}}", 0.0),  # wrong choice
    ("\\text{even}", f"{B}{{\\text{{even}}}}", 1.0),  # word answer
    # -- symbolic expressions
    ("x^2+2x+1", f"{B}{{(x+1)^2}}", 1.0),  # expanded vs factored
    ("2x+1", f"{B}{{1+2x}}", 1.0),  # reordered terms
    ("2x+1", f"{B}{{2x-1}}", 0.0),  # sign error
    ("\\sqrt{8}", f"{B}{{2\\sqrt{{2}}}}", 1.0),  # simplified radical
    ("\\sqrt{2}", f"{B}{{1.414}}", 0.0),  # approximation of an irrational
    ("2\\pi", f"{B}{{2 \\pi}}", 1.0),  # pi with a space
    ("\\pi", f"{B}{{3.14}}", 0.0),  # pi approximated
    ("\\frac{\\pi}{2}", f"{B}{{\\frac{{1}}{{2}}\\pi}}", 1.0),  # pi over two written differently
    ("y = 2x + 1", f"{B}{{y=1+2x}}", 1.0),  # equation, reordered right side
    ("x = 3", f"{B}{{3}}", 1.0),  # assignment vs bare value
    ("3", f"{B}{{x = 3}}", 1.0),  # bare gold vs assignment
    ("\\tan\\frac{\\pi}{4}", f"{B}{{1}}", 1.0),  # trigonometric value evaluates
    ("\\sin^2 x + \\cos^2 x", f"{B}{{1}}", 1.0),  # identity simplifies
    ("\\log_2 8", f"{B}{{3}}", 1.0),  # logarithm evaluates
    ("\\binom{5}{2}", f"{B}{{10}}", 1.0),  # binomial coefficient
    ("5!", f"{B}{{120}}", 1.0),  # factorial
    ("\\sqrt[3]{2}", f"{B}{{2^{{1/3}}}}", 1.0),  # cube root vs power
    ("a+b", f"{B}{{b+a}}", 1.0),  # commuted symbols
    ("a+b", f"{B}{{a-b}}", 0.0),  # different symbols combination
    ("\\infty", f"{B}{{\\infty}}", 1.0),  # infinity
    ("2+3i", f"{B}{{3i+2}}", 1.0),  # complex number
    # -- boxes: forms, nesting, several boxes
    ("5", "\\fbox{5}", 1.0),  # \fbox
    ("5", f"{B} 5", 1.0),  # \boxed without braces
    ("5", f"{B} 5.", 1.0),  # \boxed without braces, full stop
    ("\\frac{1}{2}", f"{B}{{\\frac{{1}}{{{{2}}}}}}", 1.0),  # nested braces
    ("\\{1\\}", f"{B}{{\\{{1\\}}}}", 1.0),  # escaped braces inside a box
    ("7", f"First {B}{{3}}, corrected: {B}{{7}}", 1.0),  # the last box counts
    ("3", f"First {B}{{3}}, corrected: {B}{{7}}", 0.0),  # an earlier box does not
    ("2, 3", f"{B}{{2}} and {B}{{3}}", 1.0),  # adjacent boxes form one answer
    ("2", f"{B}{{2}} or {B}{{5}}", 0.0),  # hedging between two boxed answers
    ("5", f"{B}{{}}", 0.0),  # empty box
    ("5", f"{B}{{5", 0.0),  # box never closed (truncated): no answer
    ("5", f"{B}{{4}} then {B}{{5", 0.0),  # last box truncated: an earlier box does not count
    ("5", f"{B}{{5}} is the answer, but the question said 6.", 1.0),  # numbers after the box are ignored
    ("\\frac{1}{2}", "$\\boxed{\\dfrac{1}{2}}$ is the answer", 1.0),  # box in math mode mid-sentence
    # -- fallbacks when there is no box
    ("42", "Answer: 42", 1.0),  # Answer: line
    ("42", "**Final Answer:** 42", 1.0),  # markdown answer line
    ("42", "The final answer is $42$. I hope it is correct.", 1.0),  # Minerva style sentence
    ("42", "**Final Answer**\n\n42", 1.0),  # heading, answer on the next line
    ("\\frac{1}{2}", "So the answer is $\\frac{1}{2}$.", 1.0),  # math span in an answer sentence
    ("72", "Natalia sold 48 + 24 = 72 clips.\n#### 72", 1.0),  # GSM8K ####
    ("72", "She sold 48 and then 24 more, 72 in total.", 1.0),  # last number
    ("48", "She sold 48 and then 24 more, 72 in total.", 0.0),  # last number only
    ("-4", "so x equals -4", 1.0),  # last number keeps its sign
    ("-3", "5-3", 0.0),  # a minus between numbers is not a sign: the last number is 3, not -3
    ("42", "Answer: 41", 0.0),  # wrong answer line
    ("42", "The answer is 42. Then 43 is next.", 1.0),  # answer line wins over the last number
    ("42", "no numbers here", 0.0),  # nothing to extract
    ("1000", "The total is 1,000 dollars.", 1.0),  # last number with thousands separator
    ("0.5", "the probability is \\frac{1}{2}", 1.0),  # last number as a \frac
    # -- think handling
    ("5", f"<think>easy</think>{B}{{5}}", 1.0),  # answer after the reasoning
    ("5", f"<think>so {B}{{5}}", 0.0),  # think never closed: 0 even with the right box
    ("5", f"<think>{B}{{5}}</think>I am not sure.", 0.0),  # answer only inside the reasoning
    ("5", f"<think>{B}{{3}}</think>{B}{{5}}", 1.0),  # a wrong box in the reasoning is ignored
    ("3", f"<think>{B}{{3}}</think>{B}{{5}}", 0.0),  # the reasoning's box does not count
    ("5", f"reasoning without an opening tag</think>{B}{{5}}", 1.0),  # template opened <think> in the prompt
    ("5", f"<think>a</think><think>b</think>{B}{{5}}", 1.0),  # only the text after the last </think>
    ("5", "<think>I think it is 5</think>The answer is six.", 0.0),  # number in the reasoning only
    # -- false-positive traps
    ("5", "Let me compute 2+3=5. The answer is 6.", 0.0),  # right number in the work, wrong answer line
    ("5", f"We have 5 cases. {B}{{6}}", 0.0),  # right number in the text, wrong box
    ("10", f"{B}{{100}}", 0.0),  # prefix of the digits
    ("10", f"{B}{{1.0}}", 0.0),  # a misplaced decimal point
    ("1", f"{B}{{x}}", 0.0),  # a symbol is not a number
    ("6", f"{B}{{2 \\cdot 3 = 7}}", 0.0),  # the last side of a chain counts
    ("12", f"{B}{{12}}{B}{{12}}", 1.0),  # a repeated box
    ("5", f"{B}{{5}}" + "x" * 20, 1.0),  # trailing junk after the box
    ("0", f"{B}{{9^{{9^9}}}}", 0.0),  # an exponent tower is refused without hanging
    ("1", f"{B}{{(10^{{8}})!}}", 0.0),  # a giant factorial is refused
]


@pytest.mark.parametrize(("gold", "completion", "expected"), CASES)
def test_math_reward_cases(gold, completion, expected):
    assert math_reward([completion], [gold]) == [expected]


def test_there_are_at_least_150_cases():
    # The table above is the reward's specification; keep it broad.
    assert len(CASES) >= 150


def test_batch_matches_single_calls():
    # A whole batch, verified in parallel across the pool, gives the same scores as one by one.
    golds = [g for g, _, _ in CASES]
    completions = [c for _, c, _ in CASES]
    assert math_reward(completions, golds) == [e for _, _, e in CASES]


@pytest.mark.parametrize(
    ("completion", "fallbacks", "expected"),
    [
        ("Answer: 42", (), None),  # boxed-only mode ignores answer lines
        ("Answer: 42", ("answer_line",), "42"),  # answer line enabled
        ("#### 42", ("answer_line",), None),  # #### needs "hash"
        ("#### 42", ("hash",), "42"),  # hash enabled
        ("it is 42", ("answer_line", "hash"), None),  # last number needs "last_number"
        ("it is 42", ("last_number",), "42"),  # last number enabled
        (f"{B}{{7}} Answer: 42", ("answer_line",), "7"),  # a box always wins over fallbacks
        ("Answer: 3 #### 4", ("hash", "answer_line"), "4"),  # fallbacks tried in the given order
    ],
)
def test_extract_answer_fallbacks(completion, fallbacks, expected):
    assert extract_answer(completion, fallbacks) == expected


@pytest.mark.parametrize(
    ("fallbacks", "expected"),
    [
        ((), 0.0),  # no fallbacks: an unboxed answer scores 0
        ("hash", 0.0),  # comma-separated string form, answer line not enabled
        ("answer_line,hash", 1.0),  # string form with answer lines
        (["answer_line"], 1.0),  # a list, as a YAML recipe gives it
    ],
)
def test_fallbacks_argument(fallbacks, expected):
    assert math_reward(["Answer: 9"], ["9"], fallbacks=fallbacks) == [expected]


def test_unknown_fallback_is_rejected():
    # A misspelt fallback is a configuration error, reported at once.
    with pytest.raises(ValueError, match="unknown math fallback"):
        math_reward(["Answer: 9"], ["9"], fallbacks=("answerline",))


@pytest.mark.parametrize(
    ("gold", "expected"),
    [
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", 1.0),  # GSM8K solution as the gold
        ("The sum is $\\boxed{72}$.", 1.0),  # MATH solution as the gold
        (72, 1.0),  # integer gold
        (72.0, 1.0),  # float gold
        (["71", "72"], 1.0),  # any of several acceptable answers
        ([], 0.0),  # no acceptable answer at all
        (None, 0.0),  # missing gold
    ],
)
def test_gold_forms(gold, expected):
    assert math_reward([f"{B}{{72}}"], [gold]) == [expected]


@pytest.mark.parametrize(
    ("answer", "body", "percent"),
    [
        ("$1{,}000$.", "1000", False),  # delimiters, separator, full stop
        ("\\left( 1, 2 \\right)", "( 1, 2 )", False),  # \left and \right dropped
        ("\\dfrac{1}{2}", "\\frac{1}{2}", False),  # \dfrac becomes \frac
        ("50\\%", "50", True),  # percentage flag
        ("12 apples", "12", False),  # unit word dropped
        ("2 pi", "2 pi", False),  # but not a math word
    ],
)
def test_normalize(answer, body, percent):
    assert normalize(answer) == (body, percent)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("9^{9^9}", True),  # numeric exponent tower
        ("2^{2^{30}}", True),  # tower with a braced top
        ("9**9**9", True),  # Python power syntax
        ("10^{1000000}", True),  # million-digit power
        ("7^{123456}", True),  # over 100 000 digits
        ("123456!", True),  # huge factorial
        ("(10^8)!", True),  # factorial of a power
        ("2^{10}", False),  # ordinary power
        ("e^{x^2}", False),  # symbolic tower is fine
        ("5!", False),  # small factorial
        ("2^{2023}", False),  # competition-sized power
        ("2^{2^{3}}", False),  # a small numeric tower (256)
        ("10^{2^{3}}", False),  # another small tower (10^8)
        ("2^{100000}", False),  # 30 103 digits: big but cheap
        ("0^{9^{9^9}}", False),  # a zero base stays zero however tall the tower
        ("x + 3^{9^{99}}", True),  # a huge tower inside a larger expression
    ],
)
def test_too_expensive(body, expected):
    assert too_expensive(body) is expected


def test_pathological_input_times_out_within_the_limit_and_is_counted():
    # (x+y+1)^{999} passes the cheap guards, but sympy's comparison with x^2+1 runs for minutes:
    # the worker is killed at the deadline, the answer scores 0 and counts as a timeout, and the
    # other answer of the batch is still scored.
    slow = f"{B}{{(x+y+1)^{{999}}}}"
    assert not too_expensive("(x+y+1)^{999}")
    stats.reset()
    started = time.monotonic()
    scores = math_reward([slow, f"{B}{{x^2+1}}"], ["x^2+1", "1+x^2"], timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert scores == [0.0, 1.0]
    assert elapsed < 1.0 + 5.0  # the limit plus worker start-up on a loaded machine
    assert stats.snapshot()["math"]["timeouts"] == 1.0


def test_batch_budget_bounds_a_batch_of_slow_answers():
    # Six answers that would each run for minutes, two workers: the batch budget ends the call soon
    # after it expires, and every answer counts as a timeout.
    stats.reset()
    slow = [f"{B}{{(x+y+{k})^{{999}}}}" for k in range(6)]
    started = time.monotonic()
    scores = math_reward(slow, ["x^2+1"] * 6, timeout_s=1.0, batch_timeout_s=1.5)
    assert scores == [0.0] * 6
    assert time.monotonic() - started < 1.5 + 1.0 + 4.0
    assert stats.snapshot()["math"]["timeouts"] == 6.0


def test_refused_blow_up_counts_as_timeout():
    # An exponent tower never reaches sympy; it is counted with the timeouts.
    stats.reset()
    assert math_reward([f"{B}{{9^{{9^{{9}}}}}}"], ["1"]) == [0.0]
    assert stats.snapshot()["math"]["timeouts"] == 1.0


def test_called_from_a_worker_thread():
    # math-verify's own timeouts use signal.alarm, which fails off the main thread; ours do not.
    result: list = []
    thread = threading.Thread(target=lambda: result.append(math_reward([f"{B}{{(x+1)^2}}"], ["x^2+2x+1"])))
    thread.start()
    thread.join(timeout=60)
    assert result == [[1.0]]


def test_concurrent_calls_from_many_threads():
    # Several trainer threads share one pool without mixing up their results.
    golds = [str(i) for i in range(40)]
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = [
            executor.submit(math_reward, [f"{B}{{{g}+0*x}}" for g in golds], golds if k % 2 else golds[::-1])
            for k in range(4)
        ]
        results = [f.result(timeout=120) for f in futures]
    assert results[1] == results[3] == [1.0] * 40
    assert (
        results[0] == results[2] == [1.0 if g == r else 0.0 for g, r in zip(golds, golds[::-1], strict=True)]
    )


def test_picklable():
    # TRL and multiprocessing may pickle the reward; a module-level function pickles by reference.
    restored = pickle.loads(pickle.dumps(math_reward))
    assert restored([f"{B}{{3}}"], ["3"]) == [1.0]


@pytest.mark.parametrize(
    ("completions", "answer", "expected"),
    [
        ([], [], []),  # empty batch
        ([None], ["1"], [0.0]),  # None completion
        ([123], ["1"], [0.0]),  # not a string at all
        ([[{"role": "assistant", "content": f"{B}{{1}}"}]], ["1"], [1.0]),  # chat-message completion
        ([f"{B}{{1}}", f"{B}{{2}}"], "2", [0.0, 1.0]),  # scalar gold broadcast
        ([f"{B}{{1}}"], [{"not": "a gold"}], [0.0]),  # unusable gold
        (["\x00\uffff" * 300], ["1"], [0.0]),  # binary junk
        ([f"{B}{{" + "1+" * 2000 + "1}"], ["2001"], [0.0]),  # an over-long answer is refused
    ],
)
def test_bad_input_scores_zero(completions, answer, expected):
    assert math_reward(completions, answer) == expected


def test_stats_are_recorded():
    # One call: scores, parse failures (unclosed think) counted under "math".
    stats.reset()
    math_reward([f"{B}{{1}}", "<think>1", f"{B}{{2}}"], ["1", "1", "1"], extra_column=[1, 2, 3])
    counted = stats.snapshot()["math"]
    assert counted["calls"] == 1.0 and counted["samples"] == 3.0
    assert counted["mean"] == pytest.approx(1 / 3)
    assert counted["parse_failures"] == 1.0
    assert counted["frac_zero"] == pytest.approx(2 / 3)
