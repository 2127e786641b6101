// The server's engine thread. HTTP handlers submit requests from any thread;
// one thread drives the Batcher, so every request that is running at the
// same time shares each forward pass, and hands each sequence's events back
// through the request's Channel.
//
// Lifetime: a Channel is shared by the handler and the loop; the loop drops
// its reference when the request's last sequence finishes or is cancelled.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/batcher.hpp"

namespace rvec {

// Events of one HTTP request, whose `n` choices are sequences of their own.
class Channel {
 public:
  struct Event {
    size_t choice;
    GenerationEvent event;
  };
  // Waits until the request was accepted (true) or refused (false, `error` set).
  bool wait_accepted(std::string& error);
  // Waits for the next event; nullopt once every choice has finished.
  std::optional<Event> next();
  // Why the request failed after it was accepted ("" if it did not).
  std::string failure();

 private:
  friend class EngineLoop;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Event> events_;
  std::optional<std::string> error_;
  bool accepted_ = false;
  size_t open_choices_ = 0;
};

class EngineLoop {
 public:
  EngineLoop(Transformer& model, std::shared_ptr<const Tokenizer> tokenizer, size_t max_batch, size_t max_context);
  ~EngineLoop();  // stops the thread; pending requests are dropped

  // Queues one sequence per request in `choices`; all report to the returned channel.
  std::shared_ptr<Channel> submit(std::vector<GenerationRequest> choices);
  // Abandons a request (its client went away).
  void cancel(const std::shared_ptr<Channel>& channel);
  size_t max_context() const { return max_context_; }

 private:
  struct Pending {
    std::shared_ptr<Channel> channel;
    std::vector<GenerationRequest> choices;
  };
  struct Owner {
    std::shared_ptr<Channel> channel;
    size_t choice;
  };
  void run();
  void take_inbox();
  void deliver(const std::vector<GenerationEvent>& events);
  void fail_request(const GenerationEvent& failed);

  Batcher batcher_;
  size_t max_context_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> inbox_;
  std::vector<std::shared_ptr<Channel>> cancelled_;
  bool stopping_ = false;
  std::map<uint64_t, Owner> owners_;  // sequence id -> request (engine thread only)
  std::thread thread_;
};

}  // namespace rvec
