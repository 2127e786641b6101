// rvec: reasoning vectors for Hugging Face checkpoints.
#include <fmt/format.h>

#include <filesystem>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.hpp"
#include "base/text.hpp"
#include "cli/commands.hpp"

namespace {

constexpr const char* kDescription =
    "rvec moves a post-training skill (reasoning) from one LLM to another of the same architecture by weight\n"
    "arithmetic: v = post - pre, enhanced = target + w * v. It reads and writes Hugging Face safetensors\n"
    "folders exactly, in bounded memory, and refuses bad inputs with one clear line.";

std::string g_command_line;

// Reads an integer option's value as plain decimal (parse_decimal_u64/i64)
// and hands CLI11 the number written canonically. CLI11 itself converts with
// strtoull/strtoll in base 0: "-1" would become 2^64 - 1 for an unsigned
// option (--threads -1 then asks for that many threads), "010" would be octal
// 8, and an overflow would saturate without a word.
std::string check_decimal_integer(std::string& value, bool is_signed) {
  std::optional<std::string> canonical;
  if (const auto v = rvec::parse_decimal_i64(value); is_signed && v) canonical = std::to_string(*v);
  if (const auto v = rvec::parse_decimal_u64(value); !is_signed && v) canonical = std::to_string(*v);
  if (canonical) {
    value = *canonical;
    return {};
  }
  const size_t digits_from = is_signed && value.starts_with('-') ? 1 : 0;
  const bool only_digits =
      value.size() > digits_from && value.find_first_not_of("0123456789", digits_from) == std::string::npos;
  if (only_digits) return fmt::format("{} is out of range", value);
  return fmt::format("\"{}\" is not a {}integer", value, is_signed ? "" : "non-negative ");
}

// Puts check_decimal_integer on every integer option of `app` and its subcommands.
void require_decimal_integers(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    const std::string type = option->get_type_name();
    if (type != "UINT" && type != "INT") continue;
    const bool is_signed = type == "INT";
    option->transform(
        CLI::Validator([is_signed](std::string& value) { return check_decimal_integer(value, is_signed); }, ""));
  }
  for (CLI::App* sub : app.get_subcommands({})) require_decimal_integers(*sub);
}

// Paths, names and prompts reach JSON, YAML and model cards, which hold
// UTF-8 only: an argument that is not UTF-8 is refused before any work.
std::optional<std::string> argument_not_utf8(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (const auto bad = rvec::first_invalid_utf8(argv[i])) {
      return fmt::format("argument {} (\"{}\") is not valid UTF-8 at byte {}; rvec writes paths and names into JSON "
                         "and YAML, which hold UTF-8 only",
                         i, rvec::printable(argv[i]), *bad);
    }
  }
  return std::nullopt;
}

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
  require_decimal_integers(app);
  rvec::cli::set_command_line(argc, argv);
  if (const auto refusal = argument_not_utf8(argc, argv)) {
    fmt::print(stderr, "rvec: error: {}\n", *refusal);
    return rvec::exit_code(rvec::ErrorKind::kUsage);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "rvec: error: {} (see rvec --help)\n", rvec::one_line(e.what()));
    return rvec::exit_code(rvec::ErrorKind::kUsage);
  } catch (const rvec::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "rvec: error: {}\n", rvec::one_line(e.what()));
    return rvec::exit_code(e.kind());
  } catch (const std::filesystem::filesystem_error& e) {  // the system refused: a permission, a vanished path
    std::fflush(stdout);
    fmt::print(stderr, "rvec: error: {}: {}\n", rvec::one_line(e.path1().string()), e.code().message());
    return rvec::exit_code(rvec::ErrorKind::kIo);
  } catch (const std::exception& e) {
    fmt::print(stderr, "rvec: internal error: {}\n", rvec::one_line(e.what()));
    return 1;
  }
  return exit_code;
}
