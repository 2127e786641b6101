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

  // Polls base_url/health (then /v1/models) until one answers 200; throws if
  // the process exits first or `timeout_s` passes, naming the log file.
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

// A TCP port on 127.0.0.1 that is free right now.
int free_local_port();

// GET url; the HTTP status, or 0 when nothing answered.
long http_get_status(const std::string& url, long timeout_ms = 2000);

}  // namespace rvec
