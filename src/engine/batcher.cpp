#include "engine/batcher.hpp"

#include <algorithm>
#include <utility>

#include "base/error.hpp"

namespace rvec {
namespace {

// Prompt tokens admitted per step beyond the first prompt: bounds the time
// one step takes so running sequences keep streaming while prompts arrive.
constexpr size_t kPrefillBudget = 2048;

// Length of the longest suffix of `text` that is a proper prefix of a stop
// string: that much must be held back, as the next token may complete it.
size_t stop_prefix_overlap(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& stop : stops) {
    for (size_t k = std::min(stop.size() - 1, text.size()); k > hold; --k) {
      if (text.compare(text.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kError: return "error";
    case FinishReason::kNone: break;
  }
  return nullptr;
}

struct Batcher::Sequence {
  uint64_t id;
  GenerationRequest request;
  KvCache cache;
  Sampler sampler;
  std::optional<StreamDecoder> decoder;
  std::vector<TokenId> pending;  // tokens to feed next step
  size_t generated = 0;
  std::string text;    // decoded so far, stop strings not yet cut
  size_t emitted = 0;  // bytes of text already handed out
  std::vector<PositionLogprobs> prompt_logprobs;  // gathered while the prompt runs
  std::string failure;  // why scoring the prompt failed (non-finite logits)
};

Batcher::Batcher(Transformer& model, std::shared_ptr<const Tokenizer> tokenizer, size_t max_batch,
                 size_t max_context)
    : model_(model),
      tokenizer_(std::move(tokenizer)),
      max_batch_(std::max<size_t>(1, max_batch)),
      max_context_(std::min(max_context, model.config().max_positions)) {}
Batcher::~Batcher() = default;

uint64_t Batcher::add(GenerationRequest request) {
  validate(request.sampling);
  if (request.prompt.empty()) fail(ErrorKind::kUsage, "the prompt is empty");
  if (request.prompt.size() >= max_context_) {
    fail(ErrorKind::kUsage, "the prompt has {} tokens; the context holds {}", request.prompt.size(), max_context_);
  }
  if (request.max_tokens == 0 && !request.prompt_logprobs) {
    fail(ErrorKind::kUsage, "max_tokens must be at least 1");
  }
  if (request.max_tokens > max_context_ - request.prompt.size()) {  // no overflow: the prompt fits
    fail(ErrorKind::kUsage, "the prompt ({} tokens) plus max_tokens ({}) exceeds the context of {} tokens",
         request.prompt.size(), request.max_tokens, max_context_);
  }
  for (const TokenId id : request.prompt) {
    if (id < 0 || static_cast<size_t>(id) >= model_.config().vocab) {
      fail(ErrorKind::kUsage, "prompt token id {} is outside the vocabulary (0..{})", id, model_.config().vocab - 1);
    }
  }
  const Sampler sampler(request.sampling);
  auto seq = std::make_unique<Sequence>(
      Sequence{next_id_++, std::move(request), model_.new_cache(), sampler, std::nullopt, {}, 0, {}, 0, {}, {}});
  seq->pending = seq->request.prompt;
  if (tokenizer_) seq->decoder.emplace(*tokenizer_, true);
  waiting_.push_back(std::move(seq));
  return waiting_.back()->id;
}

void Batcher::cancel(uint64_t id) {
  const auto match = [id](const auto& seq) { return seq->id == id; };
  std::erase_if(waiting_, match);
  std::erase_if(running_, match);
}

void Batcher::admit() {
  size_t budget = kPrefillBudget;
  while (!waiting_.empty() && running_.size() < max_batch_) {
    const size_t prompt = waiting_.front()->pending.size();
    const bool first = budget == kPrefillBudget;
    if (!first && prompt > budget) break;
    budget -= std::min(budget, prompt);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

// Appends `piece` to the sequence's text, cuts at a stop string, and puts in
// `event` whatever text can no longer change.
void Batcher::finish_text(Sequence& seq, std::string piece, GenerationEvent& event) {
  const auto& stops = seq.request.stop_strings;
  const size_t search_from = seq.text.size();
  seq.text += piece;
  for (const auto& stop : stops) {
    const size_t from = search_from >= stop.size() ? search_from - stop.size() + 1 : 0;
    const auto at = seq.text.find(stop, from);
    if (at != std::string::npos) {
      seq.text.resize(at);
      event.finish = FinishReason::kStop;
    }
  }
  const size_t hold = event.finish == FinishReason::kNone ? stop_prefix_overlap(seq.text, stops) : 0;
  const size_t ready = std::max(seq.emitted, seq.text.size() - hold);
  event.text = seq.text.substr(seq.emitted, ready - seq.emitted);
  seq.emitted = ready;
}

std::string Batcher::broken_model(const NonFiniteLogits& e, size_t position) const {
  return fmt::format("{}: {} at position {}; its weights hold NaN or Inf values, or its arithmetic overflows",
                     model_.folder(), e.what(), position);
}

// The logits after prompt[token] score prompt[token + 1].
void Batcher::score_prompt(Sequence& seq, size_t token, std::span<const float> logits) {
  if (!seq.failure.empty()) return;
  try {
    seq.prompt_logprobs.push_back(position_logprobs(logits, seq.request.prompt[token + 1], seq.request.top_logprobs));
  } catch (const NonFiniteLogits& e) {
    seq.failure = broken_model(e, token + 1);
  }
}

// The event of one sequence after a forward pass whose logits for it are `logits`.
GenerationEvent Batcher::next_token(Sequence& seq, std::span<const float> logits) {
  GenerationEvent event;
  event.id = seq.id;
  event.prompt_logprobs = std::exchange(seq.prompt_logprobs, {});
  try {
    if (!seq.failure.empty()) {
      event.error = seq.failure;
    } else if (seq.request.max_tokens > 0) {
      event.token = seq.sampler.sample(logits);
    }
  } catch (const NonFiniteLogits& e) {
    event.error = broken_model(e, seq.cache.length());
  }
  if (!event.error.empty()) {
    event.finish = FinishReason::kError;
    return event;
  }
  if (event.token < 0) {  // max_tokens 0: the prompt is scored, nothing is generated
    event.finish = FinishReason::kLength;
    return event;
  }
  ++seq.generated;
  seq.pending.assign(1, event.token);
  const auto& stop_tokens = seq.request.stop_tokens;
  const bool stop_token = std::find(stop_tokens.begin(), stop_tokens.end(), event.token) != stop_tokens.end();
  if (seq.request.logprobs && !stop_token) event.logprobs = position_logprobs(logits, event.token, seq.request.top_logprobs);
  std::string piece;
  if (seq.decoder && !stop_token) piece = seq.decoder->push(event.token);
  if (stop_token) event.finish = FinishReason::kStop;
  const bool out_of_room = seq.generated >= seq.request.max_tokens || seq.cache.length() >= max_context_;
  if (event.finish == FinishReason::kNone && out_of_room) event.finish = FinishReason::kLength;
  if (event.finish == FinishReason::kLength && seq.decoder) seq.decoder->cut();
  if (event.finish == FinishReason::kStop && seq.decoder) piece += seq.decoder->finish();
  finish_text(seq, std::move(piece), event);
  return event;
}

std::vector<GenerationEvent> Batcher::step() {
  admit();
  std::vector<GenerationEvent> events;
  if (running_.empty()) return events;
  std::vector<ForwardItem> items;
  bool scoring = false;
  for (auto& seq : running_) {
    const bool score = seq->request.prompt_logprobs && seq->cache.length() == 0;
    items.push_back({&seq->cache, seq->pending, score});
    scoring = scoring || score;
  }
  const EarlierLogits earlier = [&](size_t item, size_t token, std::span<const float> logits) {
    score_prompt(*running_[item], token, logits);
  };
  model_.forward(items, logits_, scoring ? earlier : EarlierLogits());
  const size_t vocab = model_.config().vocab;
  for (size_t i = 0; i < running_.size(); ++i) {
    events.push_back(next_token(*running_[i], std::span(logits_).subspan(i * vocab, vocab)));
  }
  std::erase_if(running_, [&](const auto& seq) {
    return std::any_of(events.begin(), events.end(),
                       [&](const GenerationEvent& e) { return e.id == seq->id && e.finish != FinishReason::kNone; });
  });
  return events;
}

}  // namespace rvec
