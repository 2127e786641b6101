#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/error.hpp"
#include "base/progress.hpp"
#include "base/text.hpp"
#include "cli/commands.hpp"
#include "hf/synthetic.hpp"

namespace rvec::cli {
namespace {

struct GenOptions {
  FamilyOptions family;
  std::string out;
  std::string dtype = "BF16";
  std::string max_shard_size = "5GB";
  bool tied = false, untied = false;
  bool quiet = false;
};

}  // namespace

void add_gen_family(CLI::App& app, int& exit_code) {
  auto opts = std::make_shared<GenOptions>();
  auto* cmd = app.add_subcommand(
      "gen-family", "Developer tool: generate a deterministic pre/post/target model family for tests and benches");
  cmd->footer(fmt::format(
      "Writes OUT/pre, OUT/post (= pre + small delta) and OUT/target (= pre + another delta), each a Hugging Face\n"
      "folder with config.json, tokenizer files and safetensors sharded like save_pretrained. Shapes: {}.\n"
      "Examples:\n"
      "  rvec gen-family out/tiny                          # 3 x 0.2 MB, seconds\n"
      "  rvec gen-family out/1.5b --shape 1.5b             # 3 x 3.1 GB of random bf16\n"
      "  rvec gen-family out/32b --shape 32b --sparse      # full-size headers, data as file holes",
      fmt::join(qwen2_shape_names(), ", ")));
  cmd->add_option("out", opts->out, "Output folder (pre/, post/, target/ are created in it)")->required();
  cmd->add_option("--shape", opts->family.shape, "Model shape")->capture_default_str();
  cmd->add_option("--seed", opts->family.seed, "Random seed")->capture_default_str();
  cmd->add_option("--dtype", opts->dtype, "BF16, F16 or F32")->capture_default_str();
  cmd->add_flag("--tied", opts->tied, "Tie lm_head to the embedding (no lm_head.weight)");
  cmd->add_flag("--untied", opts->untied, "Give the models their own lm_head.weight");
  cmd->add_option("--target-extra-rows", opts->family.target_extra_rows,
                  "Extra embedding/lm_head rows in target (a resized vocabulary)");
  cmd->add_option("--post-delta", opts->family.post_delta, "Size of post - pre relative to the weights")
      ->capture_default_str();
  cmd->add_option("--target-delta", opts->family.target_delta, "Size of target - pre relative to the weights")
      ->capture_default_str();
  cmd->add_flag("--unrelated-post", opts->family.unrelated_post, "Derive post from a different random parent");
  cmd->add_flag("--target-from-post", opts->family.target_from_post,
                "Derive target from post (post + delta) instead of pre: a wrong pairing for lineage tests");
  cmd->add_flag("--sparse", opts->family.sparse, "Real headers, tensor data left as holes (no disk used)");
  cmd->add_option("--max-shard-size", opts->max_shard_size, "Shard size limit, decimal units as in transformers")
      ->capture_default_str();
  cmd->add_flag("--overwrite", opts->family.overwrite, "Replace existing pre/post/target folders");
  cmd->add_flag("-q,--quiet", opts->quiet, "No progress bar");
  cmd->callback([opts, &exit_code] {
    FamilyOptions family = opts->family;
    const auto dtype = parse_dtype(opts->dtype);
    if (!dtype || !is_arithmetic(*dtype)) fail(ErrorKind::kUsage, "--dtype: \"{}\" is not BF16, F16 or F32", opts->dtype);
    family.dtype = *dtype;
    const auto shard = parse_byte_size(opts->max_shard_size);
    if (!shard) fail(ErrorKind::kUsage, "--max-shard-size: \"{}\" is not a size like 5GB or 500MB", opts->max_shard_size);
    family.max_shard_bytes = *shard;
    if (opts->tied && opts->untied) fail(ErrorKind::kUsage, "--tied and --untied exclude each other");
    if (opts->tied) family.tied = true;
    if (opts->untied) family.tied = false;
    std::unique_ptr<ProgressBar> bar;
    const uint64_t bytes = write_family(opts->out, family, [&](uint64_t done, uint64_t total) {
      if (!bar) bar = std::make_unique<ProgressBar>("generating", total, !opts->quiet);
      bar->update(done);
    });
    if (bar) bar->finish();
    fmt::print("wrote {}/{{pre,post,target}} ({} shape, seed {}, {} of tensor data{})\n", opts->out, family.shape,
               family.seed, human_bytes(bytes), family.sparse ? " as sparse holes" : "");
    exit_code = 0;
  });
}

}  // namespace rvec::cli
