// The demo's synthetic world: "add up tagged digits, give the last digit".
//
//   question  ①3 ②5 ③2 ④8 ⑤1
//   steps     ①3=3 ②5=8 ③2=0 ④8=8 ⑤1=9      (running sums mod 10)
//   answer    9
//
// The direct route (the last digit of a sum of 5-8 digits in one step) is
// hard for a small transformer; the stepwise route is easy. Each tagged digit
// ("②5") is one token, so a step is: read the previous step's tag, attend to
// the question token with the next tag (a content match on the token's own
// embedding: one attention hop, no induction circuit), copy that token, and
// add its digit to the previous running sum (one of 100 facts). An earlier
// design with the tag and the digit as separate tokens needed an induction
// head, which a 0.9M-parameter model did not form in 5000 steps (see
// demo/README.md). Tags are circled digits, which are not letters, so the
// Japanese share of an answer measures its framing words, not the scratch work.
#pragma once

#include <random>
#include <string>
#include <vector>

namespace demo {

struct Problem {
  std::vector<int> digits;
  int modulus = 10;  // the answer is the sum modulo this
  int answer() const;
  std::string question() const;  // "①3 ②5 ③2 ④8 ⑤1"
  std::string steps() const;     // "①3=3 ②5=8 ③2=0 ④8=8 ⑤1=9"
};

Problem random_problem(std::mt19937_64& rng, int min_digits, int max_digits, int modulus);

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
std::vector<std::string> template_samples(int modulus);

}  // namespace demo
