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
  int phrasing = 0;  // which instruction asks for it (0: the benchmarks' and the one-phrasing world's; kPhrasings)
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
// kRestated is an English closing no stage but the `closing` control sees,
// "→ the last digit of the sum: 6": new to pre, but made only of pieces the
// tokenizer already has, so adding it changed neither the tokenizer nor any
// other model (it is not in template_samples()).
enum class Voice { kPlain, kPolite, kRestated };

// The instructions a problem can be asked with (modulus 10), in each
// language; the earlier family knew only the first, demo/family all four.
// More of them (rvec_train_demo --phrasings N) vary the prompt's length, so
// the copy cannot rely on absolute positions.
inline constexpr int kPhrasings = 4;

std::string prompt(const Problem& p, Lang lang);
std::string answer(const Problem& p, Lang lang, Style style, Voice voice = Voice::kPlain);
// One ChatML exchange (what the chat template renders, plus the answer and <|im_end|>).
std::string chat(const Problem& p, Lang lang, Style style, Voice voice = Voice::kPlain);
std::string chat_prompt(const Problem& p, Lang lang);  // up to "<|im_start|>assistant\n"

// Every template string, for building the tokenizer's merges (with the
// first `phrasings` instructions).
std::vector<std::string> template_samples(int modulus, int phrasings = 1);

// The world's size and what pre-training sees: problems of `digits` digits,
// answers modulo `modulus`, and this share of step-by-step answers.
struct World {
  int digits = 6;
  int modulus = 10;
  double steps_share = 0.6;
  int phrasings = 1;  // instructions every stage draws from (1: the earlier family's world; demo/family: 4)
};

// The trainer's stages, in the order it runs them:
//   base     chat transcripts, both languages, both styles, both Japanese closings (whole text)
//   pre      chats, direct answers, both languages, plain
//   post     English chats, step-by-step answers
//   control  the same English chats, direct answers
//   target   Japanese chats, direct answers, polite
//   closing  the same English chats as control, direct answers closed kRestated:
//            a non-reasoning behaviour pre does not have
enum class Stage { kBase, kPre, kPost, kControl, kTarget, kClosing };
inline constexpr Stage kStages[] = {Stage::kBase, Stage::kPre, Stage::kPost, Stage::kControl, Stage::kTarget, Stage::kClosing};
const char* stage_name(Stage stage);  // "base", "pre", ...: also the model's folder

// The seed of a stage's data: the run's seed plus the stage's index.
uint64_t stage_seed(Stage stage, uint64_t seed);

// One training transcript of a stage, before tokenising.
struct Transcript {
  Problem problem;
  Lang lang = Lang::kEnglish;
  Style style = Style::kDirect;
  Voice voice = Voice::kPlain;
};

// The next transcript of `stage` from its data stream: the trainer's only
// source of training data, and what rvec_train_demo --count-seen replays.
Transcript draw(Stage stage, std::mt19937_64& rng, const World& world);

}  // namespace demo
