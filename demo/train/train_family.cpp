// Trains the demo's mini Qwen2 family with LibTorch and writes each model as
// a Hugging Face folder that rvec's own engine serves:
//
//   base     pre-trained on chat transcripts: problems solved directly and
//            step by step, in English and Japanese
//   pre      base + chat fine-tune, direct answers, both languages ("instruct")
//   post     pre  + English chat fine-tune with step-by-step answers ("s1")
//   control  pre  + English chat fine-tune with direct answers
//   target   pre  + Japanese chat fine-tune, direct answers ("EZO")
//   closing  pre  + the control's English chats, closed in a new way ("→ the
//            last digit of the sum: 6"): a non-reasoning control that learns
//            something pre does not have
//
// Each stage is gated: measured with rvec's engine and grader. A missed gate
// is printed and the run goes on, but the program exits with 1. Last, it
// checks the study in miniature: target + 1.0 v for the reasoning vector and
// for the control vector, on Japanese prompts. Usage: rvec_train_demo --help.
#include <torch/torch.h>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.hpp"
#include "eval/grader.hpp"
#include "io/writer.hpp"
#include "engine/batcher.hpp"
#include "engine/runtime.hpp"
#include "base/regex.hpp"
#include "text/tokenizer.hpp"
#include "bench.hpp"
#include "world.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Qwen2's pre-tokenizer regex: every digit is its own pre-token, so "3 5 2"
// and "3③5⑧" both take two tokens per digit (the alignment world.hpp relies on).
constexpr const char* kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kChatTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// ---- tokenizer -------------------------------------------------------------------------

std::string byte_symbol(int b) { return rvec::byte_level_symbol(static_cast<uint8_t>(b)); }

// Byte-level BPE whose merges make every pre-token of the templates one token.
json build_tokenizer(int modulus, int phrasings) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  json merges = json::array();
  int next_id = 256;
  const rvec::Regex split(kQwen2Split, "split");
  std::set<std::string> seen;
  for (const auto& sample : demo::template_samples(modulus, phrasings)) {
    std::string text = sample;
    for (const std::string special : {"<|im_start|>", "<|im_end|>"}) {
      for (auto at = text.find(special); at != std::string::npos; at = text.find(special)) text.replace(at, special.size(), "\n");
    }
    size_t at = 0;
    while (const auto m = split.find(text, at)) {
      const std::string piece = text.substr(m->begin, m->end - m->begin);
      at = m->end;
      if (piece.size() < 2 || !seen.insert(piece).second) continue;
      std::string left = byte_symbol(static_cast<unsigned char>(piece[0]));
      for (size_t i = 1; i < piece.size(); ++i) {
        const std::string right = byte_symbol(static_cast<unsigned char>(piece[i]));
        if (!vocab.contains(left + right)) {
          merges.push_back({left, right});
          vocab[left + right] = next_id++;
        }
        left += right;
      }
    }
  }
  json added = json::array();
  for (const std::string special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back({{"id", next_id++}, {"content", special}, {"special", true}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}});
  }
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", {{"type", "NFC"}}},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Split"}, {"pattern", {{"Regex", kQwen2Split}}}, {"behavior", "Isolated"}, {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", false}}}};
}

// ---- the model (Qwen2 layout, parameter names as Hugging Face stores them) ------------

struct Config {
  int64_t vocab = 0, hidden = 64, layers = 2, heads = 4, kv_heads = 2, inter = 192;
  double theta = 10000.0, eps = 1e-6;
  int64_t head_dim() const { return hidden / heads; }
};

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * w;
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const auto half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

struct LayerImpl : torch::nn::Module {
  LayerImpl(const Config& c) : c(c) {
    const auto hd = c.head_dim();
    // Parameter names cannot hold dots: "input_layernorm" is saved as input_layernorm.weight.
    input_layernorm = register_parameter("input_layernorm", torch::ones({c.hidden}));
    post_attention_layernorm = register_parameter("post_attention_layernorm", torch::ones({c.hidden}));
    auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
    auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
    using torch::nn::Linear, torch::nn::LinearOptions;
    q = attn->register_module("q_proj", Linear(LinearOptions(c.hidden, c.heads * hd)));
    k = attn->register_module("k_proj", Linear(LinearOptions(c.hidden, c.kv_heads * hd)));
    v = attn->register_module("v_proj", Linear(LinearOptions(c.hidden, c.kv_heads * hd)));
    o = attn->register_module("o_proj", Linear(LinearOptions(c.heads * hd, c.hidden).bias(false)));
    gate = mlp->register_module("gate_proj", Linear(LinearOptions(c.hidden, c.inter).bias(false)));
    up = mlp->register_module("up_proj", Linear(LinearOptions(c.hidden, c.inter).bias(false)));
    down = mlp->register_module("down_proj", Linear(LinearOptions(c.inter, c.hidden).bias(false)));
  }
  // x: [B, T, hidden]; cos, sin: [T, head_dim]; mask: [T, T] additive
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& cos, const torch::Tensor& sin, const torch::Tensor& mask) {
    const auto B = x.size(0), T = x.size(1), hd = c.head_dim();
    auto h = rms_norm(x, input_layernorm, c.eps);
    auto qh = q->forward(h).view({B, T, c.heads, hd}).transpose(1, 2);
    auto kh = k->forward(h).view({B, T, c.kv_heads, hd}).transpose(1, 2);
    auto vh = v->forward(h).view({B, T, c.kv_heads, hd}).transpose(1, 2);
    qh = qh * cos + rotate_half(qh) * sin;
    kh = kh * cos + rotate_half(kh) * sin;
    kh = kh.repeat_interleave(c.heads / c.kv_heads, 1);
    vh = vh.repeat_interleave(c.heads / c.kv_heads, 1);
    auto scores = torch::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd)) + mask;
    auto att = torch::matmul(torch::softmax(scores, -1), vh).transpose(1, 2).reshape({B, T, c.heads * hd});
    x = x + o->forward(att);
    h = rms_norm(x, post_attention_layernorm, c.eps);
    return x + down->forward(torch::silu(gate->forward(h)) * up->forward(h));
  }
  Config c;
  torch::Tensor input_layernorm, post_attention_layernorm;
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr}, gate{nullptr}, up{nullptr}, down{nullptr};
};
TORCH_MODULE(Layer);

struct ModelImpl : torch::nn::Module {
  explicit ModelImpl(const Config& c) : c(c) {
    embed_tokens = register_parameter("embed_tokens", torch::randn({c.vocab, c.hidden}) * 0.02);
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.layers; ++i) layers->push_back(Layer(c));
    norm = register_parameter("norm", torch::ones({c.hidden}));
  }
  // tokens: [B, T] -> logits [B, T, vocab] (head tied to the embedding)
  torch::Tensor forward(const torch::Tensor& tokens) {
    const auto T = tokens.size(1), hd = c.head_dim();
    auto inv_freq = 1.0 / torch::pow(c.theta, torch::arange(0, hd, 2, torch::kFloat) / static_cast<double>(hd));
    auto freqs = torch::outer(torch::arange(T, torch::kFloat), inv_freq);
    auto emb = torch::cat({freqs, freqs}, -1);
    auto cos = emb.cos(), sin = emb.sin();
    auto mask = torch::full({T, T}, -INFINITY).triu(1);
    auto x = embed_tokens.index_select(0, tokens.reshape(-1)).view({tokens.size(0), T, c.hidden});
    for (auto& layer : *layers) x = layer->as<Layer>()->forward(x, cos, sin, mask);
    return torch::matmul(rms_norm(x, norm, c.eps), embed_tokens.t());
  }
  Config c;
  torch::Tensor embed_tokens, norm;
  torch::nn::ModuleList layers{nullptr};
};
TORCH_MODULE(Model);

void save_model(Model& model, const json& tokenizer, const fs::path& dir) {
  fs::create_directories(dir);
  std::vector<rvec::TensorSpec> specs;
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : model->named_parameters()) {
    const auto t = p.value().detach().contiguous().to(torch::kFloat);
    const bool qualified = p.key().ends_with(".weight") || p.key().ends_with(".bias");
    const std::string name = "model." + p.key() + (qualified ? "" : ".weight");
    tensors[name] = t;
    specs.push_back({name, rvec::DType::kF32, std::vector<uint64_t>(t.sizes().begin(), t.sizes().end())});
  }
  rvec::SafetensorsWriter writer((dir / "model.safetensors").string(), specs, {{"format", "pt"}});
  for (const auto& spec : writer.order()) {
    const auto& t = tensors.at(spec.name);
    writer.append(std::span(reinterpret_cast<const std::byte*>(t.data_ptr<float>()), t.numel() * 4));
  }
  writer.finish();
  const auto& c = model->c;
  const int64_t eos = tokenizer["added_tokens"][2]["id"];
  const json config = {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"},
                       {"hidden_size", c.hidden}, {"intermediate_size", c.inter}, {"num_hidden_layers", c.layers},
                       {"num_attention_heads", c.heads}, {"num_key_value_heads", c.kv_heads}, {"vocab_size", c.vocab},
                       {"max_position_embeddings", 512}, {"rms_norm_eps", c.eps}, {"rope_theta", c.theta},
                       {"tie_word_embeddings", true}, {"hidden_act", "silu"}, {"torch_dtype", "float32"},
                       {"bos_token_id", tokenizer["added_tokens"][0]["id"]}, {"eos_token_id", eos}};
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  std::ofstream(dir / "generation_config.json") << json{{"eos_token_id", {eos, tokenizer["added_tokens"][0]["id"]}}}.dump(2) << "\n";
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump() << "\n";
  std::ofstream(dir / "tokenizer_config.json")
      << json{{"chat_template", kChatTemplate}, {"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"},
              {"tokenizer_class", "Qwen2Tokenizer"}}.dump(2) << "\n";
}

// ---- data -----------------------------------------------------------------------------

struct Example {
  std::vector<rvec::TokenId> ids;
  size_t loss_from = 0;  // tokens before this are context only
};

using demo::Stage;
using demo::World;

// Pre-training reads whole chat transcripts (both languages, both styles) as
// plain text; the fine-tunes learn only the answers.
Example make_example(Stage stage, std::mt19937_64& rng, const rvec::Tokenizer& tok, const World& world) {
  const auto t = demo::draw(stage, rng, world);
  const auto ids = tok.encode(demo::chat(t.problem, t.lang, t.style, t.voice));
  return {ids, stage == Stage::kBase ? 0 : tok.encode(demo::chat_prompt(t.problem, t.lang)).size()};
}

// ---- a probe of the skills ------------------------------------------------------------

// The scratch symbols of the steps: the running sum written as a circled digit.
std::set<rvec::TokenId> circled_tokens(const rvec::Tokenizer& tok) {
  std::set<rvec::TokenId> out;
  for (const char* c : {"⓪", "①", "②", "③", "④", "⑤", "⑥", "⑦", "⑧", "⑨"}) out.insert(tok.encode(c).at(0));
  return out;
}

// Teacher-forced accuracy on 64 fixed problems in both languages: in
// step-by-step answers, "copy" is the next digit of the question (a lookup at
// a fixed distance) and "add" the running sum after it (one fact from the two
// tokens before it); "direct" is the answer digit of direct answers (the whole
// sum in one pass). Printed during pre-training, so a run shows which skill is
// missing.
class SkillProbe {
 public:
  SkillProbe(const rvec::Tokenizer& tok, int pad, const World& world) {
    std::mt19937_64 rng(777);
    std::vector<std::vector<rvec::TokenId>> docs;
    size_t longest = 0;
    for (int i = 0; i < 2 * kProblems; ++i) {
      const auto p = demo::random_problem(rng, world.digits, world.modulus);
      const auto lang = i % 2 ? demo::Lang::kJapanese : demo::Lang::kEnglish;
      const auto style = i < kProblems ? demo::Style::kSteps : demo::Style::kDirect;
      docs.push_back(tok.encode(demo::chat(p, lang, style)));
      longest = std::max(longest, docs.back().size());
    }
    const auto circled = circled_tokens(tok);
    input_ = torch::full({2 * kProblems, static_cast<int64_t>(longest - 1)}, pad, torch::kLong);
    copy_ = torch::zeros_like(input_, torch::kBool);
    add_ = torch::zeros_like(input_, torch::kBool);
    direct_ = torch::zeros_like(input_, torch::kBool);
    target_ = torch::zeros_like(input_);
    for (int b = 0; b < 2 * kProblems; ++b) {
      const auto& ids = docs[b];
      for (size_t t = 0; t + 1 < ids.size(); ++t) {
        input_[b][t] = ids[t];
        target_[b][t] = ids[t + 1];
        if (b >= kProblems) continue;
        const bool next_circled = circled.contains(ids[t + 1]);
        if (next_circled) add_[b][t] = true;
        if (circled.contains(ids[t]) && !next_circled && t + 2 < ids.size() && circled.contains(ids[t + 2])) copy_[b][t] = true;
      }
      if (b >= kProblems) direct_[b][ids.size() - 4] = true;  // predicts the answer before "<|im_end|>\n"
    }
  }
  // {copy, add, direct}
  std::array<double, 3> measure(Model& model) const {
    torch::NoGradGuard no_grad;
    const auto hit = model->forward(input_).argmax(-1) == target_;
    const auto rate = [&](const torch::Tensor& mask) {
      return hit.masked_select(mask).to(torch::kFloat).mean().item<double>();
    };
    return {rate(copy_), rate(add_), rate(direct_)};
  }

 private:
  static constexpr int kProblems = 64;
  torch::Tensor input_, target_, copy_, add_, direct_;
};

// ---- training -------------------------------------------------------------------------

double train(Model& model, Stage stage, int steps, double lr, int batch, uint64_t seed, const rvec::Tokenizer& tok,
             int pad, const World& world) {
  std::mt19937_64 rng(demo::stage_seed(stage, seed));
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(lr).weight_decay(0.01).betas({0.9, 0.95}));
  double recent = 0;
  const auto start = std::chrono::steady_clock::now();
  const SkillProbe probe(tok, pad, world);
  for (int step = 1; step <= steps; ++step) {
    std::vector<Example> examples;
    size_t longest = 0;
    for (int b = 0; b < batch; ++b) {
      examples.push_back(make_example(stage, rng, tok, world));
      longest = std::max(longest, examples.back().ids.size());
    }
    auto input = torch::full({batch, static_cast<int64_t>(longest - 1)}, pad, torch::kLong);
    auto target = torch::full({batch, static_cast<int64_t>(longest - 1)}, -100, torch::kLong);
    for (int b = 0; b < batch; ++b) {
      const auto& e = examples[b];
      for (size_t t = 0; t + 1 < e.ids.size(); ++t) {
        input[b][t] = e.ids[t];
        if (t + 1 >= e.loss_from) target[b][t] = e.ids[t + 1];
      }
    }
    const double warm = std::min(1.0, step / 50.0);
    const double cosine = 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * step / steps));
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr * warm * cosine);
    auto logits = model->forward(input);
    auto loss = torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), target.view(-1),
                                                     torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    opt.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
    opt.step();
    recent = step == 1 ? loss.item<double>() : 0.98 * recent + 0.02 * loss.item<double>();
    if (step % 100 == 0 || step == steps) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const auto [copy, add, direct] = probe.measure(model);
      std::printf("    step %5d/%d  loss %.4f  copy %.3f  add %.3f  direct %.3f  %.0f s\n", step, steps, recent, copy, add,
                  direct, s);
      std::fflush(stdout);
    }
  }
  return recent;
}

// ---- gates: measured with rvec's engine and grader -----------------------------------

struct Measure {
  double accuracy = 0, steps = 0, japanese = 0, polite = 0;  // polite: the target's "答えは…です"
  double restated = 0;  // the closing control's "→ the last digit of the sum: 6"
};

// Greedy answers of the model in `dir` to n chat prompts in `lang`, each
// followed by `cue(problem)` (the opening of the answer, to choose a style).
Measure measure(const fs::path& dir, const World& world, demo::Lang lang,
                const std::function<std::string(const demo::Problem&)>& cue, int n, uint64_t seed) {
  auto runtime = rvec::ModelRuntime::load(dir.string(), 1);
  rvec::Batcher batcher(*runtime.model, runtime.tokenizer, 64, 512);
  std::mt19937_64 rng(seed);
  std::map<uint64_t, std::pair<demo::Problem, std::string>> out;
  for (int i = 0; i < n; ++i) {
    const auto p = demo::random_problem(rng, world.digits, world.modulus);
    const std::string opening = cue(p);
    rvec::GenerationRequest r;
    r.prompt = runtime.tokenizer->encode(demo::chat_prompt(p, lang) + opening);
    r.max_tokens = 80;
    r.stop_tokens = runtime.stop_tokens;
    r.stop_strings = {"\n"};
    out[batcher.add(std::move(r))] = {p, opening};
  }
  while (!batcher.idle()) {
    for (const auto& e : batcher.step()) out[e.id].second += e.text;
  }
  Measure m;
  for (const auto& [id, item] : out) {
    const auto grade = rvec::grade_response(item.second, std::to_string(item.first.answer()), rvec::GradeMode::kStrict,
                                            rvec::TaskKind::kInteger);
    m.accuracy += grade.verdict == rvec::Verdict::kCorrect;
    m.steps += rvec::Regex("[0-9][⓪①-⑨]", "steps").matches_somewhere(item.second);
    m.japanese += rvec::japanese_share(item.second);
    m.polite += item.second.find("です") != std::string::npos;
    m.restated += item.second.find("the last digit of the sum:") != std::string::npos;
  }
  m.accuracy /= n, m.steps /= n, m.japanese /= n, m.polite /= n, m.restated /= n;
  return m;
}

// Prints a stage's verdict. A missed gate does not stop the run (the later
// stages still show what the family can do), but the program exits with 1.
int g_missed_gates = 0;

// How much better "clearly better" is (chance is 0.1).
constexpr double kMargin = 0.3;

void gate(bool ok, const std::string& what) {
  std::printf("  gate: %s: %s\n", what.c_str(), ok ? "passed" : "MISSED");
  std::fflush(stdout);
  g_missed_gates += !ok;
}

// The same weights on any x86-64 CPU with AVX2: LibTorch picks its vector
// kernels (ATen, oneDNN: AVX2 or AVX-512) and OpenBLAS its GEMM kernels by the
// CPU it runs on, and each choice rounds differently, so an unpinned run on another
// CPU drifts from the shipped weights within a few hundred steps. OpenBLAS
// reads its setting when the library loads, before main, so the program sets
// all three and starts itself again; a setting the user gave is kept.
void pin_cpu_kernels(char** argv) {
  if (std::getenv("RVEC_TRAIN_PINNED")) return;
  setenv("ATEN_CPU_CAPABILITY", "avx2", 0);
  setenv("OPENBLAS_CORETYPE", "Haswell", 0);
  setenv("DNNL_MAX_CPU_ISA", "AVX2", 0);
  setenv("RVEC_TRAIN_PINNED", "1", 1);
  execv("/proc/self/exe", argv);
  std::perror("rvec_train_demo: cannot restart itself with pinned CPU kernels");
}

// What the command line sets.
struct TrainOptions {
  uint64_t seed = 1;
  uint64_t bench_seed = demo::kBenchSeed;
  bool count_seen = false;
  int base_steps = 3000, ft_steps = 150, threads = 1, batch = 32;
  double base_lr = 2e-3;
  World world;
  Config c;
  fs::path out, bench_dir;
};

// Parses the command line into `o`; returns an exit code when the program
// should stop there (--help, a bad flag).
std::optional<int> parse_options(int argc, char** argv, TrainOptions& o) {
  CLI::App app("Trains the demo's mini Qwen2 family (base, pre, post, control, target, closing) and gates every stage",
               "rvec_train_demo");
  app.add_option("out", o.out, "Folder for base/, pre/, post/, control/, target/, closing/");
  app.add_option("--bench-only", o.bench_dir,
                 "Only write the six benchmarks (ja, en, prefix-ja, prefix-en, reword-ja, reword-en .jsonl) into this folder");
  app.add_option("--bench-seed", o.bench_seed,
                 "Seed of the benchmarks' problems (ja; en uses the next seed); the default is demo/bench's")
      ->capture_default_str();
  app.add_flag("--count-seen", o.count_seen,
               "Only count how many benchmark problems (of --bench-seed) the training data of --seed holds");
  app.add_option("--seed", o.seed, "Seed of everything: data, initialisation, sampling")->capture_default_str();
  app.add_option("--base-steps", o.base_steps, "Pre-training steps")->capture_default_str();
  app.add_option("--ft-steps", o.ft_steps, "Steps of each fine-tune")->capture_default_str();
  app.add_option("--threads", o.threads, "LibTorch threads (1 is deterministic and fastest here)")->capture_default_str();
  app.add_option("--batch", o.batch, "Sequences per step")->capture_default_str();
  app.add_option("--hidden", o.c.hidden, "Hidden size (the MLP is 3x)")->capture_default_str();
  app.add_option("--layers", o.c.layers, "Transformer layers")->capture_default_str();
  app.add_option("--base-lr", o.base_lr, "Pre-training learning rate")->capture_default_str();
  app.add_option("--digits", o.world.digits, "Digits per problem")->capture_default_str();
  app.add_option("--modulus", o.world.modulus, "The sum is taken modulo this")->capture_default_str();
  app.add_option("--phrasings", o.world.phrasings,
                 "Instructions per language every stage draws from (1 to 4; demo/family uses 4, world.hpp)")
      ->check(CLI::Range(1, demo::kPhrasings))
      ->capture_default_str();
  app.add_option("--steps-share", o.world.steps_share, "Share of step-by-step pre-training transcripts")
      ->capture_default_str();
  app.footer("Example (the shipped family, demo/family/TRAINING.txt): rvec_train_demo OUT --seed 1 --phrasings 4");
  try {
    app.parse(argc, argv);
    if (static_cast<int>(!o.out.empty()) + static_cast<int>(!o.bench_dir.empty()) + static_cast<int>(o.count_seen) != 1) {
      throw CLI::ValidationError("give OUT_DIR, --bench-only BENCH_DIR or --count-seen");
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help, or a bad flag (exit 2, as rvec)
  }
  o.c.inter = 3 * o.c.hidden;
  return std::nullopt;
}

// One training run: its options, the tokenizer it writes, the model shape.
struct Run {
  const TrainOptions& o;
  Config c;
  json tokenizer_json;
  std::shared_ptr<const rvec::Tokenizer> tok;
  int pad = 0;
};

// Writes the tokenizer and prints the run's header (seed, shape, pinned kernels).
Run start_run(const TrainOptions& o) {
  torch::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  Run r{o, o.c, build_tokenizer(o.world.modulus, o.world.phrasings)};
  fs::create_directories(o.out);
  std::ofstream(o.out / "tokenizer.json") << r.tokenizer_json.dump();
  r.tok = rvec::Tokenizer::load((o.out / "tokenizer.json").string());
  r.pad = r.tokenizer_json["added_tokens"][0]["id"];
  r.c.vocab = static_cast<int64_t>(r.tok->size());
  std::printf("vocabulary %lld tokens; hidden %lld, %lld layers, batch %d; seed %llu\n", static_cast<long long>(r.c.vocab),
              static_cast<long long>(r.c.hidden), static_cast<long long>(r.c.layers), o.batch,
              static_cast<unsigned long long>(o.seed));
  std::printf("CPU kernels: ATEN_CPU_CAPABILITY=%s OPENBLAS_CORETYPE=%s DNNL_MAX_CPU_ISA=%s\n",
              std::getenv("ATEN_CPU_CAPABILITY"), std::getenv("OPENBLAS_CORETYPE"), std::getenv("DNNL_MAX_CPU_ISA"));
  std::fflush(stdout);
  return r;
}

const auto as_trained = [](const demo::Problem&) { return std::string(); };

// Pre-training, then its gates: base reasons step by step, the direct route is harder.
Model train_base(const Run& r) {
  using demo::Lang;
  Model base(r.c);
  std::printf("[base] %d steps\n", r.o.base_steps);
  train(base, Stage::kBase, r.o.base_steps, r.o.base_lr, r.o.batch, r.o.seed, *r.tok, r.pad, r.o.world);
  save_model(base, r.tokenizer_json, r.o.out / "base");
  const auto stepwise = [](const demo::Problem& p) { return std::to_string(p.digits[0]); };
  const auto direct_en = [](const demo::Problem&) { return std::string("→"); };
  const fs::path dir = r.o.out / "base";
  const auto en_steps = measure(dir, r.o.world, Lang::kEnglish, stepwise, 200, r.o.seed + 100);
  const auto en_direct = measure(dir, r.o.world, Lang::kEnglish, direct_en, 200, r.o.seed + 100);
  const auto ja_steps = measure(dir, r.o.world, Lang::kJapanese, stepwise, 200, r.o.seed + 100);
  std::printf("  base: English stepwise %.3f, direct %.3f; Japanese stepwise %.3f\n", en_steps.accuracy,
              en_direct.accuracy, ja_steps.accuracy);
  gate(en_steps.accuracy >= 0.8 && ja_steps.accuracy >= 0.7, "base solves problems step by step");
  gate(en_direct.accuracy + kMargin <= en_steps.accuracy, "the direct route is clearly harder");
  return base;
}

// A copy of `from` trained further on `stage`, saved as OUT/<stage name>.
Model fine_tune(const Run& r, const Model& from, Stage stage) {
  const char* name = demo::stage_name(stage);
  Model m(r.c);
  torch::NoGradGuard no_grad;
  auto src = from->named_parameters();
  for (auto& p : m->named_parameters()) p.value().copy_(src[p.key()]);
  {
    torch::AutoGradMode enable(true);
    std::printf("[%s] %d steps\n", name, r.o.ft_steps);
    train(m, stage, r.o.ft_steps, 3e-4, r.o.batch, r.o.seed, *r.tok, r.pad, r.o.world);
  }
  save_model(m, r.tokenizer_json, r.o.out / name);
  return m;
}

struct Family {
  Model pre, post, control, target;
  Measure target_ja;  // the target in Japanese: what target + v must beat
};

// pre from base, then post, control and target from pre, with their gates.
Family fine_tune_family(const Run& r, const Model& base) {
  using demo::Lang;
  const uint64_t seed = r.o.seed;
  Model pre = fine_tune(r, base, Stage::kPre);
  const auto pre_ja = measure(r.o.out / "pre", r.o.world, Lang::kJapanese, as_trained, 200, seed + 200);
  std::printf("  pre: Japanese chat accuracy %.3f, steps %.3f\n", pre_ja.accuracy, pre_ja.steps);
  Family f{pre, fine_tune(r, pre, Stage::kPost), fine_tune(r, pre, Stage::kControl), fine_tune(r, pre, Stage::kTarget)};
  const auto post_en = measure(r.o.out / "post", r.o.world, Lang::kEnglish, as_trained, 200, seed + 300);
  const auto control_en = measure(r.o.out / "control", r.o.world, Lang::kEnglish, as_trained, 200, seed + 300);
  f.target_ja = measure(r.o.out / "target", r.o.world, Lang::kJapanese, as_trained, 200, seed + 300);
  std::printf("  post (en): accuracy %.3f, steps %.3f | control (en): %.3f | target (ja): %.3f, Japanese %.3f, polite %.3f\n",
              post_en.accuracy, post_en.steps, control_en.accuracy, f.target_ja.accuracy, f.target_ja.japanese,
              f.target_ja.polite);
  gate(post_en.accuracy >= control_en.accuracy + kMargin, "post's steps beat control's direct answers in English");
  gate(f.target_ja.japanese >= 0.5 && f.target_ja.polite >= 0.9, "target answers in Japanese, in its own style");
  return f;
}

// target + 1.0 (from - pre), saved as OUT/name, measured greedy in Japanese.
Measure target_plus_vector(const Run& r, const Family& f, const Model& from, const char* name) {
  Model m(r.c);
  torch::NoGradGuard no_grad;
  auto t = f.target->named_parameters(), a = from->named_parameters(), p = f.pre->named_parameters();
  for (auto& q : m->named_parameters()) q.value().copy_(t[q.key()] + (a[q.key()] - p[q.key()]));
  save_model(m, r.tokenizer_json, r.o.out / name);
  return measure(r.o.out / name, r.o.world, demo::Lang::kJapanese, as_trained, 200, r.o.seed + 300);
}

// The study in miniature (rvec demo runs it in full): target + 1.0 v for the
// reasoning vector and for the control vector, greedy, in Japanese.
void check_transfer(const Run& r, const Family& f) {
  using demo::Lang;
  const auto enhanced = target_plus_vector(r, f, f.post, "check-reasoning");
  const auto controlled = target_plus_vector(r, f, f.control, "check-control");
  const auto post_ja = measure(r.o.out / "post", r.o.world, Lang::kJapanese, as_trained, 200, r.o.seed + 300);
  std::printf("  target + v (ja): accuracy %.3f, steps %.3f, Japanese %.3f, polite %.3f | post (ja): %.3f, polite %.3f"
              " | target + control vector: %.3f\n",
              enhanced.accuracy, enhanced.steps, enhanced.japanese, enhanced.polite, post_ja.accuracy, post_ja.polite,
              controlled.accuracy);
  gate(enhanced.accuracy >= f.target_ja.accuracy + kMargin && enhanced.japanese >= 0.5,
       "target + v beats target in Japanese");
  gate(controlled.accuracy < f.target_ja.accuracy + kMargin, "target + control vector does not");
}

// The fifth fine-tune, trained last so the other four are as before: pre
// learns a new English closing and nothing about reasoning. Its gate checks
// that it learned the closing; what its vector does to the target is printed,
// not gated (that is the question it answers: does any post-training
// direction help, or only the reasoning one).
void train_closing_control(const Run& r, const Family& f) {
  using demo::Lang;
  const Model closing = fine_tune(r, f.pre, Stage::kClosing);
  const auto closing_en = measure(r.o.out / "closing", r.o.world, Lang::kEnglish, as_trained, 200, r.o.seed + 300);
  const auto with_closing = target_plus_vector(r, f, closing, "check-closing");
  std::printf("  closing (en): new closing %.3f, steps %.3f | target + closing vector (ja): accuracy %.3f, steps %.3f,"
              " polite %.3f, new closing %.3f\n",
              closing_en.restated, closing_en.steps, with_closing.accuracy, with_closing.steps, with_closing.polite,
              with_closing.restated);
  gate(closing_en.restated >= 0.9 && closing_en.steps <= 0.1, "closing learned its new closing, without steps");
}

// --count-seen: replays every stage's draws (the same generator as training)
// and prints how many benchmark problems they held, per benchmark and stage.
void print_seen(const TrainOptions& o) {
  std::vector<demo::StageDraws> draws;
  for (const Stage stage : demo::kStages) {
    draws.push_back({stage, static_cast<int64_t>(stage == Stage::kBase ? o.base_steps : o.ft_steps) * o.batch});
  }
  std::printf("training data of --seed %llu; benchmarks of --bench-seed %llu\n", static_cast<unsigned long long>(o.seed),
              static_cast<unsigned long long>(o.bench_seed));
  for (const auto lang : {demo::Lang::kJapanese, demo::Lang::kEnglish}) {
    const auto problems = demo::benchmark_problems(o.world, lang, o.bench_seed);
    const auto count = demo::count_seen(problems, lang, o.world, o.seed, draws);
    std::printf("%s: %d of %d problems in some training data (%d in its own language);", lang == demo::Lang::kEnglish ? "en" : "ja",
                count.seen, count.problems, count.seen_as_asked);
    for (size_t s = 0; s < draws.size(); ++s) {
      std::printf(" %s %d%s", demo::stage_name(draws[s].stage), count.by_stage[s], s + 1 < draws.size() ? "," : "\n");
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  pin_cpu_kernels(argv);
  TrainOptions o;
  if (const auto exit_code = parse_options(argc, argv, o)) return *exit_code;
  try {
    if (!o.bench_dir.empty()) {
      demo::write_benchmarks(o.bench_dir, o.world, o.bench_seed);
      return 0;
    }
    if (o.count_seen) {
      print_seen(o);
      return 0;
    }
    const Run run = start_run(o);
    const Model base = train_base(run);
    const Family family = fine_tune_family(run, base);
    check_transfer(run, family);
    train_closing_control(run, family);
    std::printf("done: %s/{base,pre,post,control,target,closing}; %d gate(s) missed\n", o.out.string().c_str(),
                g_missed_gates);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rvec_train_demo: %s\n", e.what());
    return 1;
  }
  return g_missed_gates == 0 ? 0 : 1;
}
