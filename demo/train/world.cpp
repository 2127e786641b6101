#include "world.hpp"

#include <numeric>

namespace demo {

int Problem::answer() const { return std::accumulate(digits.begin(), digits.end(), 0) % modulus; }

std::string Problem::question() const {
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) out += (i ? " " : "") + std::to_string(digits[i]);
  return out;
}

std::string Problem::steps() const {
  static const char* const kCircled[] = {"⓪", "①", "②", "③", "④", "⑤", "⑥", "⑦", "⑧", "⑨"};
  std::string out;
  int sum = 0;
  for (const int d : digits) {
    sum = (sum + d) % modulus;
    out += std::to_string(d) + kCircled[sum];
  }
  return out;
}

Problem random_problem(std::mt19937_64& rng, int digits, int modulus) {
  Problem p;
  p.modulus = modulus;
  for (int i = 0; i < digits; ++i) p.digits.push_back(std::uniform_int_distribution<int>(0, 9)(rng));
  return p;
}

std::string prompt(const Problem& p, Lang lang) {
  static const char* const kEnglish[kPhrasings] = {
      "Add up the digits and give the last digit of the sum. ", "Sum these digits; last digit? ",
      "Please add all of the digits below together and then tell me the last digit of their total. ",
      "Last digit of the sum of "};
  static const char* const kJapanese[kPhrasings] = {
      "数字をすべて足して、和の一の位を答えてください。", "数字の和の一の位は？",
      "下の数字を全部足して、その合計の一の位を教えてください。お願いします。", "和の一の位："};
  if (p.modulus == 10) return (lang == Lang::kEnglish ? kEnglish : kJapanese)[p.phrasing] + p.question();
  const std::string m = std::to_string(p.modulus);
  return lang == Lang::kEnglish ? "Add up the digits and give the remainder of the sum divided by " + m + ". " + p.question()
                                : "数字をすべて足して、和を" + m + "で割った余りを答えてください。" + p.question();
}

std::string answer(const Problem& p, Lang lang, Style style, Voice voice) {
  const std::string scratch = style == Style::kSteps ? p.steps() : "";
  const std::string result = std::to_string(p.answer());
  if (lang == Lang::kEnglish) return scratch + (voice == Voice::kRestated ? "→ the last digit of the sum: " : "→ Answer: ") + result;
  return scratch + (voice == Voice::kPolite ? "→ 答えは" + result + "です。" : "→ 答え：" + result);
}

std::string chat_prompt(const Problem& p, Lang lang) {
  return "<|im_start|>user\n" + prompt(p, lang) + "<|im_end|>\n<|im_start|>assistant\n";
}

std::string chat(const Problem& p, Lang lang, Style style, Voice voice) {
  return chat_prompt(p, lang) + answer(p, lang, style, voice) + "<|im_end|>\n";
}

std::vector<std::string> template_samples(int modulus, int phrasings) {
  std::vector<std::string> out = {"0⓪1①2②3③4④5⑤6⑥7⑦8⑧9⑨"};  // every scratch symbol
  for (int phrasing = 0; phrasing < phrasings; ++phrasing) {
    const Problem p{{1, 2, 3, 4, 5, 6, 7, 8, 9, 0}, modulus, phrasing};
    for (const Lang lang : {Lang::kEnglish, Lang::kJapanese}) {
      for (const Style style : {Style::kDirect, Style::kSteps}) {
        for (const Voice voice : {Voice::kPlain, Voice::kPolite}) out.push_back(chat(p, lang, style, voice));
      }
    }
  }
  return out;
}

const char* stage_name(Stage stage) {
  static const char* const kNames[] = {"base", "pre", "post", "control", "target", "closing"};
  return kNames[static_cast<int>(stage)];
}

uint64_t stage_seed(Stage stage, uint64_t seed) { return seed + static_cast<uint64_t>(stage); }

Transcript draw(Stage stage, std::mt19937_64& rng, const World& world) {
  Transcript t{random_problem(rng, world.digits, world.modulus)};
  const auto pick = [&](double prob) { return std::uniform_real_distribution<double>(0, 1)(rng) < prob; };
  // Drawn only with several phrasings, so the one-phrasing world's draws are unchanged.
  if (world.phrasings > 1) t.problem.phrasing = std::uniform_int_distribution<int>(0, world.phrasings - 1)(rng);
  t.lang = pick(0.5) ? Lang::kEnglish : Lang::kJapanese;
  if (stage == Stage::kBase) {
    t.style = pick(world.steps_share) ? Style::kSteps : Style::kDirect;
    const Voice voice = pick(0.5) ? Voice::kPolite : Voice::kPlain;  // both exist in Japanese text
    if (t.lang == Lang::kJapanese) t.voice = voice;
    return t;
  }
  if (stage == Stage::kPost) t.style = Style::kSteps;
  if (stage == Stage::kPost || stage == Stage::kControl || stage == Stage::kClosing) t.lang = Lang::kEnglish;
  if (stage == Stage::kTarget) t.lang = Lang::kJapanese, t.voice = Voice::kPolite;
  if (stage == Stage::kClosing) t.voice = Voice::kRestated;
  return t;
}

}  // namespace demo
