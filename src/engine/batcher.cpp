#include "engine/batcher.hpp"

#include <algorithm>

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
  if (request.max_tokens == 0) fail(ErrorKind::kUsage, "max_tokens must be at least 1");
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
      Sequence{next_id_++, std::move(request), model_.new_cache(), sampler, std::nullopt, {}, 0, {}, 0});
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

std::vector<GenerationEvent> Batcher::step() {
  admit();
  std::vector<GenerationEvent> events;
  if (running_.empty()) return events;
  std::vector<ForwardItem> items;
  for (auto& seq : running_) items.push_back({&seq->cache, seq->pending});
  model_.forward(items, logits_);
  const size_t vocab = model_.config().vocab;
  for (size_t i = 0; i < running_.size(); ++i) {
    Sequence& seq = *running_[i];
    GenerationEvent event;
    event.id = seq.id;
    try {
      event.token = seq.sampler.sample(std::span(logits_).subspan(i * vocab, vocab));
    } catch (const NonFiniteLogits& e) {
      event.finish = FinishReason::kError;
      event.error = fmt::format("{}: {} at position {}; its weights hold NaN or Inf values, or its arithmetic "
                                "overflows",
                                model_.folder(), e.what(), seq.cache.length());
      events.push_back(std::move(event));
      continue;
    }
    ++seq.generated;
    seq.pending.assign(1, event.token);
    const auto& stop_tokens = seq.request.stop_tokens;
    const bool stop_token = std::find(stop_tokens.begin(), stop_tokens.end(), event.token) != stop_tokens.end();
    std::string piece;
    if (seq.decoder && !stop_token) piece = seq.decoder->push(event.token);
    if (stop_token) event.finish = FinishReason::kStop;
    const bool out_of_room = seq.generated >= seq.request.max_tokens || seq.cache.length() >= max_context_;
    if (event.finish == FinishReason::kNone && out_of_room) event.finish = FinishReason::kLength;
    if (event.finish == FinishReason::kLength && seq.decoder) seq.decoder->cut();
    if (event.finish == FinishReason::kStop && seq.decoder) piece += seq.decoder->finish();
    finish_text(seq, std::move(piece), event);
    events.push_back(std::move(event));
  }
  std::erase_if(running_, [&](const auto& seq) {
    return std::any_of(events.begin(), events.end(),
                       [&](const GenerationEvent& e) { return e.id == seq->id && e.finish != FinishReason::kNone; });
  });
  return events;
}

}  // namespace rvec
