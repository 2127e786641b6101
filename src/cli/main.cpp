// rvec: reasoning vectors for Hugging Face checkpoints.
#include <fmt/format.h>

#include <filesystem>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.hpp"
#include "cli/commands.hpp"

namespace {

constexpr const char* kDescription =
    "rvec moves a post-training skill (reasoning) from one LLM to another of the same architecture by weight\n"
    "arithmetic: v = post - pre, enhanced = target + w * v. It reads and writes Hugging Face safetensors\n"
    "folders exactly, in bounded memory, and refuses bad inputs with one clear line.";

std::string g_command_line;

}  // namespace

namespace rvec::cli {

void set_command_line(int argc, char** argv) {
  g_command_line.clear();
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool plain = !arg.empty() && arg.find_first_of(" '\"\\$`|&;<>*?()") == std::string::npos;
    g_command_line += (i ? " " : "") + (plain ? arg : "'" + arg + "'");
  }
}

const std::string& command_line() { return g_command_line; }

}  // namespace rvec::cli

int main(int argc, char** argv) {
  CLI::App app(kDescription, "rvec");
  app.set_version_flag("--version", std::string("rvec ") + RVEC_VERSION);
  app.require_subcommand(1);
  app.footer("Run `rvec <command> --help` for each command's options and examples.");
  int exit_code = 0;
  rvec::cli::add_inspect(app, exit_code);
  rvec::cli::add_check(app, exit_code);
  rvec::cli::add_gen_family(app, exit_code);
  rvec::cli::add_merge_commands(app, exit_code);
  rvec::cli::add_stats(app, exit_code);
  rvec::cli::add_generate_commands(app, exit_code);
  rvec::cli::add_eval_commands(app, exit_code);
  rvec::cli::set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "rvec: error: {} (see rvec --help)\n", e.what());
    return rvec::exit_code(rvec::ErrorKind::kUsage);
  } catch (const rvec::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "rvec: error: {}\n", e.what());
    return rvec::exit_code(e.kind());
  } catch (const std::filesystem::filesystem_error& e) {  // the system refused: a permission, a vanished path
    std::fflush(stdout);
    fmt::print(stderr, "rvec: error: {}: {}\n", e.path1().string(), e.code().message());
    return rvec::exit_code(rvec::ErrorKind::kIo);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rvec: internal error: {}\n", e.what());
    return 1;
  }
  return exit_code;
}
