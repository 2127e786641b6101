// The demo's synthetic world: "add up six digits, give the last digit of the sum".
//
//   question   3 5 2 8 1 7
//   steps      3③5⑧2⓪8⑧1⑨7⑥→ Answer: 6     (each digit, then the running sum, circled)
//   direct     → Answer: 6
//
// The direct route (the last digit of a sum of six digits in one forward
// pass) is hard for a small transformer. The stepwise route is an aligned
// scratchpad: the question ("3", " ", "5", ...) and the steps ("3", "③",
// "5", ...) both take two tokens per digit and every problem has the same
// length, so each step first copies the question digit at one fixed distance
// behind it (a copy whose target is the digit itself, so its attention head
// gets a direct training signal) and then writes one addition fact from the
// two tokens just before it. Designs that made the model search for the next
// operand, or fold the copy into the sum, did not learn in an hour of CPU
// (demo/README.md); this one learns both skills in a few hundred steps.
//
// Every answer ends "→ Answer: 6" (or "→ 答え：6"), and a direct answer is
// just that ending: the choice "steps or not" is the first answer token, a
// digit or "→", the same tokens in both languages. That is what lets a
// vector learned on English prompts change the choice on Japanese ones.
#pragma once

#include <random>
#include <string>
#include <vector>

namespace demo {

struct Problem {
  std::vector<int> digits;
  int modulus = 10;
  int phrasing = 0;  // which instruction asks for it (0: the shipped world's only one; kPhrasings)
  int answer() const;            // the sum modulo `modulus`
  std::string question() const;  // "3 5 2 8 1 7"
  std::string steps() const;     // "3③5⑧2⓪8⑧1⑨7⑥" (running sums modulo `modulus`)
};

Problem random_problem(std::mt19937_64& rng, int digits, int modulus);

enum class Lang { kEnglish, kJapanese };
enum class Style { kDirect, kSteps };
// How the answer is closed: plain "→ 答え：6" (every model) or the target's own
// polite Japanese "→ 答えは6です。" (only the target's fine-tune sees it, so a
// merged model that keeps it has kept something of the target that post lacks).
enum class Voice { kPlain, kPolite };

// The instructions a problem can be asked with (modulus 10), in each
// language; the shipped family knows only the first. More of them
// (rvec_train_demo --phrasings N) vary the prompt's length, so the copy
// cannot rely on absolute positions.
inline constexpr int kPhrasings = 4;

std::string prompt(const Problem& p, Lang lang);
std::string answer(const Problem& p, Lang lang, Style style, Voice voice = Voice::kPlain);
// One ChatML exchange (what the chat template renders, plus the answer and <|im_end|>).
std::string chat(const Problem& p, Lang lang, Style style, Voice voice = Voice::kPlain);
std::string chat_prompt(const Problem& p, Lang lang);  // up to "<|im_start|>assistant\n"

// Every template string, for building the tokenizer's merges (with the
// first `phrasings` instructions).
std::vector<std::string> template_samples(int modulus, int phrasings = 1);

}  // namespace demo
