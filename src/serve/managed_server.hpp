// An inference server that a sweep starts, waits for, and always stops.
//
// The command runs under /bin/sh in its own process group with its output
// in a log file; it gets SIGTERM if rvec dies (PR_SET_PDEATHSIG), and the
// whole group gets SIGTERM (then SIGKILL after a grace period) when the
// ManagedServer is stopped or destroyed — also when an exception unwinds
// past it, and on Ctrl-C (see stop_managed_servers_on_signals()).
#pragma once

#include <sys/types.h>

#include <string>

namespace rvec {

class ManagedServer {
 public:
  ManagedServer(const std::string& command, const std::string& log_path);
  ~ManagedServer();
  ManagedServer(const ManagedServer&) = delete;
  ManagedServer& operator=(const ManagedServer&) = delete;

  // Polls base_url/health until it answers 200 (or, for a server without
  // /health, until /v1/models does); throws if the process exits first or
  // `timeout_s` passes, naming the log file.
  void wait_ready(const std::string& base_url, double timeout_s);
  // Idempotent.
  void stop();
  pid_t pid() const { return pid_; }

 private:
  std::string command_, log_;
  pid_t pid_ = -1;
};

// Installs SIGINT/SIGTERM handlers that stop every running ManagedServer's
// process group before the process dies with the signal.
void stop_managed_servers_on_signals();

// A TCP port on 127.0.0.1 that is free right now and that no earlier call in
// this process returned, so the workers of one sweep never pick the same
// port (the kernel hands out a recently freed port again: in 2,000 calls,
// about 140 repeats). Another process can still take it before the server
// binds it. Thread-safe.
int free_local_port();

struct HttpAnswer {
  long status = 0;  // 0 when nothing answered
  std::string body;
};

// GET url, waiting at most `timeout_ms`; a body over 1 MiB counts as no
// answer (status 0).
HttpAnswer http_get(const std::string& url, long timeout_ms = 2000);

}  // namespace rvec
