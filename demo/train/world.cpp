#include "world.hpp"

#include <numeric>

namespace demo {
namespace {

const char* const kTags[] = {"①", "②", "③", "④", "⑤", "⑥", "⑦", "⑧"};

}  // namespace

int Problem::answer() const { return std::accumulate(digits.begin(), digits.end(), 0) % modulus; }

std::string Problem::question() const {
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) out += (i ? " " : "") + std::string(kTags[i]) + std::to_string(digits[i]);
  return out;
}

std::string Problem::steps() const {
  std::string out;
  int sum = 0;
  for (size_t i = 0; i < digits.size(); ++i) {
    sum = (sum + digits[i]) % modulus;
    out += (i ? " " : "") + std::string(kTags[i]) + std::to_string(digits[i]) + "=" + std::to_string(sum);
  }
  return out;
}

Problem random_problem(std::mt19937_64& rng, int min_digits, int max_digits, int modulus) {
  Problem p;
  p.modulus = modulus;
  const int n = std::uniform_int_distribution<int>(min_digits, max_digits)(rng);
  for (int i = 0; i < n; ++i) p.digits.push_back(std::uniform_int_distribution<int>(0, 9)(rng));
  return p;
}

std::string prompt(const Problem& p, Lang lang) {
  if (p.modulus == 10) {
    return lang == Lang::kEnglish ? "Add up the digits and give the last digit of the sum. " + p.question()
                                  : "数字をすべて足して、和の一の位を答えてください。" + p.question();
  }
  const std::string m = std::to_string(p.modulus);
  return lang == Lang::kEnglish ? "Add up the digits and give the remainder of the sum divided by " + m + ". " + p.question()
                                : "数字をすべて足して、和を" + m + "で割った余りを答えてください。" + p.question();
}

std::string answer(const Problem& p, Lang lang, Style style) {
  const std::string result = std::to_string(p.answer());
  if (lang == Lang::kEnglish) {
    return style == Style::kSteps ? "Step by step: " + p.steps() + ". Answer: " + result : "Answer: " + result;
  }
  return style == Style::kSteps ? "順番に足します。" + p.steps() + "。答え：" + result : "答え：" + result;
}

std::string document(const Problem& p, Lang lang, Style style) {
  return lang == Lang::kEnglish ? "Problem: " + prompt(p, lang) + "\nSolution: " + answer(p, lang, style) + "\n"
                                : "問題：" + prompt(p, lang) + "\n解答：" + answer(p, lang, style) + "\n";
}

std::string chat_prompt(const Problem& p, Lang lang) {
  return "<|im_start|>user\n" + prompt(p, lang) + "<|im_end|>\n<|im_start|>assistant\n";
}

std::string chat(const Problem& p, Lang lang, Style style) {
  return chat_prompt(p, lang) + answer(p, lang, style) + "<|im_end|>\n";
}

std::vector<std::string> template_samples(int modulus) {
  Problem p{{1, 2, 3, 4, 5, 6, 7, 8}, modulus};
  std::vector<std::string> out;
  std::string tagged_digits;
  for (const char* tag : kTags) {
    for (char d = '0'; d <= '9'; ++d) tagged_digits += std::string(tag) + d + " ";
  }
  out.push_back(tagged_digits);
  for (const Lang lang : {Lang::kEnglish, Lang::kJapanese}) {
    for (const Style style : {Style::kDirect, Style::kSteps}) {
      out.push_back(document(p, lang, style));
      out.push_back(chat(p, lang, style));
    }
  }
  return out;
}

}  // namespace demo
