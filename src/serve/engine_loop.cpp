#include "serve/engine_loop.hpp"

#include "base/error.hpp"

namespace rvec {

bool Channel::wait_accepted(std::string& error) {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return accepted_ || error_.has_value(); });
  if (error_) error = *error_;
  return accepted_;
}

std::optional<Channel::Event> Channel::next() {
  std::unique_lock lock(mutex_);
  ready_.wait(lock, [&] { return !events_.empty() || open_choices_ == 0 || error_.has_value(); });
  if (events_.empty()) return std::nullopt;
  Event event = std::move(events_.front());
  events_.pop_front();
  return event;
}

std::string Channel::failure() {
  std::lock_guard lock(mutex_);
  return accepted_ && error_ ? *error_ : std::string();
}

EngineLoop::EngineLoop(Transformer& model, std::shared_ptr<const Tokenizer> tokenizer, size_t max_batch,
                       size_t max_context)
    : batcher_(model, std::move(tokenizer), max_batch, max_context),
      max_context_(batcher_.max_context()),
      thread_([this] { run(); }) {}

EngineLoop::~EngineLoop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::shared_ptr<Channel> EngineLoop::submit(std::vector<GenerationRequest> choices) {
  auto channel = std::make_shared<Channel>();
  {
    std::lock_guard lock(mutex_);
    inbox_.push_back({channel, std::move(choices)});
  }
  wake_.notify_all();
  return channel;
}

void EngineLoop::cancel(const std::shared_ptr<Channel>& channel) {
  {
    std::lock_guard lock(mutex_);
    cancelled_.push_back(channel);
  }
  wake_.notify_all();
}

// Moves new requests into the batcher (refusing those that cannot fit) and
// drops cancelled ones. Runs on the engine thread.
void EngineLoop::take_inbox() {
  std::deque<Pending> inbox;
  std::vector<std::shared_ptr<Channel>> cancelled;
  {
    std::lock_guard lock(mutex_);
    inbox.swap(inbox_);
    cancelled.swap(cancelled_);
  }
  for (auto& pending : inbox) {
    std::vector<uint64_t> ids;
    std::string error;
    try {
      for (auto& choice : pending.choices) ids.push_back(batcher_.add(std::move(choice)));
    } catch (const Error& e) {
      error = e.what();
      for (const uint64_t id : ids) batcher_.cancel(id);
    }
    Channel& channel = *pending.channel;
    std::lock_guard lock(channel.mutex_);
    if (!error.empty()) {
      channel.error_ = error;
    } else {
      channel.accepted_ = true;
      channel.open_choices_ = ids.size();
      for (size_t i = 0; i < ids.size(); ++i) owners_[ids[i]] = {pending.channel, i};
    }
    channel.ready_.notify_all();
  }
  for (const auto& channel : cancelled) {
    std::erase_if(owners_, [&](const auto& entry) {
      if (entry.second.channel != channel) return false;
      batcher_.cancel(entry.first);
      return true;
    });
  }
}

// Ends the request of `failed` with its error; its other choices are cancelled.
void EngineLoop::fail_request(const GenerationEvent& failed) {
  const std::shared_ptr<Channel> channel = owners_.at(failed.id).channel;
  std::erase_if(owners_, [&](const auto& entry) {
    if (entry.second.channel != channel) return false;
    batcher_.cancel(entry.first);
    return true;
  });
  std::lock_guard lock(channel->mutex_);
  channel->error_ = failed.error;
  channel->ready_.notify_all();
}

void EngineLoop::deliver(const std::vector<GenerationEvent>& events) {
  for (const auto& event : events) {
    const auto owner = owners_.find(event.id);
    if (owner == owners_.end()) continue;
    if (event.finish == FinishReason::kError) {
      fail_request(event);
      continue;
    }
    Channel& channel = *owner->second.channel;
    {
      std::lock_guard lock(channel.mutex_);
      channel.events_.push_back({owner->second.choice, event});
      if (event.finish != FinishReason::kNone) --channel.open_choices_;
      channel.ready_.notify_all();
    }
    if (event.finish != FinishReason::kNone) owners_.erase(owner);
  }
}

void EngineLoop::run() {
  while (true) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !inbox_.empty() || !cancelled_.empty() || !batcher_.idle(); });
      if (stopping_) break;
    }
    take_inbox();
    try {
      deliver(batcher_.step());
    } catch (const Error& e) {
      // A step that fails fails every request in it; the server keeps running.
      for (auto& [id, owner] : owners_) {
        batcher_.cancel(id);
        std::lock_guard lock(owner.channel->mutex_);
        owner.channel->error_ = e.what();
        owner.channel->ready_.notify_all();
      }
      owners_.clear();
    }
  }
  for (auto& [id, owner] : owners_) {
    std::lock_guard lock(owner.channel->mutex_);
    owner.channel->error_ = "the server is shutting down";
    owner.channel->ready_.notify_all();
  }
}

}  // namespace rvec
