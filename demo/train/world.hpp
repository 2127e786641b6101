// The demo's synthetic world: "add up tagged digits, give the last digit".
//
//   question  ①3 ②5 ③2 ④8 ⑤1
//   steps     ①3=3 ②5=8 ③2=0 ④8=8 ⑤1=9      (running sums mod 10)
//   answer    9
//
// The direct route (the last digit of a sum of 5-8 digits in one step) is
// hard for a small transformer; the stepwise route is easy: each step finds
// the next tag in the question (a unique token, so the lookup is an exact
// match), copies its digit, and adds it to the previous running sum (one of
// 100 facts the base model sees thousands of times). Tags are circled digits,
// which are not letters, so the Japanese share of an answer measures its
// framing words, not the scratch work.
#pragma once

#include <random>
#include <string>
#include <vector>

namespace demo {

struct Problem {
  std::vector<int> digits;
  int answer() const;
  std::string question() const;  // "①3 ②5 ③2 ④8 ⑤1"
  std::string steps() const;     // "①3=3 ②5=8 ③2=0 ④8=8 ⑤1=9"
};

Problem random_problem(std::mt19937_64& rng, int min_digits, int max_digits);

enum class Lang { kEnglish, kJapanese };
enum class Style { kDirect, kSteps };

std::string prompt(const Problem& p, Lang lang);
std::string answer(const Problem& p, Lang lang, Style style);
// A raw pre-training document: "Problem: ...\nSolution: ...\n".
std::string document(const Problem& p, Lang lang, Style style);
// One ChatML exchange (what the chat template renders, plus the answer and <|im_end|>).
std::string chat(const Problem& p, Lang lang, Style style);
std::string chat_prompt(const Problem& p, Lang lang);  // up to "<|im_start|>assistant\n"

// Every template string, for building the tokenizer's merges.
std::vector<std::string> template_samples();

}  // namespace demo
