// Subcommands of the rvec CLI. Each add_* registers its subcommand on `app`;
// when the subcommand runs, it stores its process exit code in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace rvec::cli {

void add_inspect(CLI::App& app, int& exit_code);
void add_check(CLI::App& app, int& exit_code);
void add_gen_family(CLI::App& app, int& exit_code);
void add_merge_commands(CLI::App& app, int& exit_code);  // merge, extract, apply, run
void add_stats(CLI::App& app, int& exit_code);
void add_generate_commands(CLI::App& app, int& exit_code);  // tokenize, generate, serve
void add_eval_commands(CLI::App& app, int& exit_code);      // eval, grade, report

// The command line as typed (recorded in outputs' provenance).
void set_command_line(int argc, char** argv);
const std::string& command_line();

}  // namespace rvec::cli
