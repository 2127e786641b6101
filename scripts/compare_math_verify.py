#!/usr/bin/env python3
"""Grades tests/eval/grader_cases.jsonl with Math-Verify and compares its
verdicts with the ones the cases expect from rvec (docs/evaluation.md,
"rvec's verdicts beside Math-Verify's").

Math-Verify is not a dependency of rvec and its registry is not reachable from
this project's machines; run this where `import math_verify` works (e.g. after
`pip install math-verify`, or with PYTHONPATH naming checkouts of Math-Verify
and latex2sympy2_extended).

Math-Verify is used as its README shows: parse() with its default extraction
(LaTeX and plain expressions, with the anchor-less fallback), verify(gold,
answer). Its verdict is no_answer when parse() finds nothing. Choice cases use
StringExtractionConfig with the letters A-E.

Usage: scripts/compare_math_verify.py [CASES.jsonl]
Prints the agreement with rvec's strict and lenient modes and one Markdown
table row per case where Math-Verify and rvec's lenient mode disagree.
"""
import json
import sys

from math_verify import StringExtractionConfig, parse, verify

LETTERS = ("A", "B", "C", "D", "E")


def math_verify_verdict(case):
    if case.get("kind") == "choice":
        config = [StringExtractionConfig(strings=LETTERS)]
        gold_text = case["gold"] if case["gold"] in LETTERS else LETTERS[int(case["gold"])]
        gold, answer = parse(gold_text, config), parse(case["response"], config)
    else:
        gold, answer = parse("$" + case["gold"] + "$"), parse(case["response"])
    if not answer:
        return "no_answer", "-"
    return ("correct" if verify(gold, answer) else "wrong"), str(answer[-1])


def cell(text):
    """Text for a Markdown table cell in a code span: line breaks shown as ⏎."""
    return text.replace("\n", "⏎").replace("|", "\\|")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/eval/grader_cases.jsonl"
    with open(path, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    agree = {"strict": 0, "lenient": 0}
    rows = []
    for case in cases:
        verdict, read = math_verify_verdict(case)
        for mode in agree:
            agree[mode] += verdict == case[mode]
        if verdict != case["lenient"]:
            rows.append(f"| `{cell(case['response'])}` | {case['gold']} | {case['strict']} | {case['lenient']} "
                        f"| {verdict} (`{cell(read)}`) |")
    print(f"{len(cases)} cases; Math-Verify agrees with rvec strict on {agree['strict']}, "
          f"with rvec lenient on {agree['lenient']}\n")
    print("| response | gold | rvec strict | rvec lenient | Math-Verify (what it read) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
