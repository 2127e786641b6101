// Integration tests: a FIFO where rvec expects a file (a model shard, a
// config, a tokenizer, a data set, a recipe, an output) is refused at once
// with one line naming it; it never blocks the command. Each command runs
// under `timeout` so that a regression fails (exit 124) instead of hanging.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "serve/serve_util.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;

// Replaces the file at `path` (if any) by a FIFO nobody writes to.
void make_fifo(const fs::path& path) {
  fs::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0644), 0) << path;
}

test::RunResult run_with_deadline(const std::string& args) {
  return test::run_shell("timeout -k 5 20 " RVEC_CLI_PATH " " + args);
}

void expect_refused(const std::string& args, const fs::path& fifo, int exit_code = 4) {
  const auto r = run_with_deadline(args);
  EXPECT_EQ(r.exit_code, exit_code) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(fifo.string() + ": not a regular file (a FIFO)"), std::string::npos) << args << "\n"
                                                                                               << r.output;
}

class NonRegularFiles : public ::testing::Test {
 protected:
  // A model folder with one file replaced by a FIFO.
  fs::path model_with_fifo(const std::string& name, const std::string& file) {
    const fs::path model = dir_ / name;
    test::write_chat_model(model);
    test::write_file(model / "generation_config.json", R"({"eos_token_id": 299})");
    make_fifo(model / file);
    return model;
  }
  test::TempDir dir_;
};

TEST_F(NonRegularFiles, ModelFilesThatAreFifosAreRefusedByEveryCommand) {
  for (const char* file :
       {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    const fs::path model = model_with_fifo(std::string("m-") + file, file);
    expect_refused("inspect " + model.string(), model / file);
    expect_refused("generate " + model.string() + " -p hi -n 2", model / file);
    expect_refused("serve " + model.string() + " --port 0", model / file);
  }
  const fs::path single = dir_ / "alone.safetensors";  // files named directly
  make_fifo(single);
  expect_refused("inspect " + single.string(), single);
  expect_refused("tokenize " + (dir_ / "m-tokenizer.json" / "tokenizer.json").string() + " hi",
                 dir_ / "m-tokenizer.json" / "tokenizer.json");
}

TEST_F(NonRegularFiles, CheckAndMergeRefuseAFifoInAnyInput) {
  test::write_chat_model(dir_ / "pre", 1);
  test::write_chat_model(dir_ / "post", 2);
  const fs::path target = model_with_fifo("target", "tokenizer_config.json");
  const std::string models = (dir_ / "pre").string() + " " + (dir_ / "post").string() + " " + target.string();
  expect_refused("check " + models, target / "tokenizer_config.json");
  expect_refused("merge --pre " + (dir_ / "pre").string() + " --post " + (dir_ / "post").string() + " --target " +
                     target.string() + " -w 1 -o " + (dir_ / "out").string(),
                 target / "tokenizer_config.json");
  make_fifo(dir_ / "post" / "model.safetensors");
  expect_refused("check " + models, dir_ / "post" / "model.safetensors");
}

TEST_F(NonRegularFiles, DataSetsRecipesAndResultsThatAreFifosAreRefused) {
  const fs::path fifo = dir_ / "data.jsonl";
  make_fifo(fifo);
  expect_refused(
      "eval --endpoint http://127.0.0.1:9 --model m --data " + fifo.string() + " -o " + (dir_ / "r.jsonl").string(),
      fifo);
  test::write_file(dir_ / "problems.jsonl", R"({"id": "1", "question": "1+1?", "answer": "2"})"
                                            "\n");
  expect_refused("eval --endpoint http://127.0.0.1:9 --model m --data " + (dir_ / "problems.jsonl").string() + " -o " +
                     fifo.string(),
                 fifo);
  expect_refused("grade " + fifo.string(), fifo);
  expect_refused("report " + fifo.string(), fifo);
  const fs::path recipe = dir_ / "job.yaml";
  make_fifo(recipe);
  expect_refused("run " + recipe.string(), recipe);
  expect_refused("sweep " + recipe.string() + " --dry-run", recipe);
}

TEST_F(NonRegularFiles, OutputsThatAreFifosAreUsageErrors) {
  test::write_chat_model(dir_ / "pre", 1);
  test::write_chat_model(dir_ / "post", 2);
  const fs::path plot = dir_ / "layers.svg";
  make_fifo(plot);
  expect_refused(
      "stats --pre " + (dir_ / "pre").string() + " --post " + (dir_ / "post").string() + " --plot " + plot.string(),
      plot, 2);
  // Reports are written to a temporary file renamed into place; a FIFO there
  // once blocked `rvec report` for good.
  test::write_file(dir_ / "r.jsonl", R"({"id": "1", "response": "The answer is 2.", "answer": "2"})"
                                     "\n");
  const fs::path temporary = dir_ / "report.json.rvec-tmp";
  make_fifo(temporary);
  expect_refused("report " + (dir_ / "r.jsonl").string() + " --json-out " + (dir_ / "report.json").string(), temporary,
                 2);
}

}  // namespace
}  // namespace rvec
