// The merge methods bit for bit against a scalar reference written here from
// docs/merging.md: whole tensors in memory, top-k by sorting, DARE's
// generator re-implemented, every f32 operation in the documented order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <numeric>

#include "base/error.hpp"
#include "hf/synthetic.hpp"
#include "hf/tensor_names.hpp"
#include "io/async_sink.hpp"
#include "merge/executor.hpp"
#include "merge/job.hpp"
#include "merge/open_family.hpp"
#include "merge/provenance.hpp"
#include "merge/reference.hpp"
#include "test_util.hpp"

namespace rvec {
namespace {

namespace fs = std::filesystem;
using test::ref_encode;
using test::ref_values;

// --- DARE's generator, from docs/merging.md -------------------------------------

uint64_t ref_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t ref_fnv1a(const std::string& text) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

bool ref_dare_keeps(uint64_t seed, const std::string& tensor, uint64_t vector, uint64_t j, double density) {
  const uint64_t key = ref_mix(ref_mix(ref_mix(seed) ^ ref_fnv1a(tensor)) + vector);
  const uint64_t u = ref_mix(key + (j + 1) * 0x9E3779B97F4A7C15ull);
  return static_cast<double>(u >> 11) < density * 9007199254740992.0;
}

// --- the reference method ----------------------------------------------------------

enum class Trim { kNone, kTopK, kBand, kRandom };
enum class Rescale { kNone, kDensity, kL1 };

struct RefMethod {
  Trim trim = Trim::kNone;
  bool elect = false;
  bool vote_weighted = false;
  bool normalize = false;
  Rescale rescale = Rescale::kNone;
  uint64_t seed = 0;
};

// One vector's values for one tensor.
struct RefVectorValues {
  double weight = 1, density = 1, gamma = 0;
};

// Ranks of |d| descending, ties by lowest index.
std::vector<size_t> ranked(const std::vector<float>& d) {
  std::vector<size_t> order(d.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return std::fabs(d[a]) > std::fabs(d[b]); });
  return order;
}

std::vector<float> ref_trim(const RefMethod& m, const std::vector<float>& d, const RefVectorValues& v,
                            const std::string& tensor, size_t vector) {
  const size_t n = d.size();
  std::vector<bool> keep(n, m.trim == Trim::kNone);
  const auto k = static_cast<size_t>(std::floor(v.density * static_cast<double>(n)));
  if (m.trim == Trim::kTopK || m.trim == Trim::kBand) {
    const size_t lo = m.trim == Trim::kBand ? std::min<size_t>(static_cast<size_t>(std::floor(v.gamma * n)), n - k) : 0;
    const auto order = ranked(d);
    for (size_t r = lo; r < lo + k; ++r) keep[order[r]] = true;
  } else if (m.trim == Trim::kRandom) {
    for (size_t j = 0; j < n; ++j) keep[j] = ref_dare_keeps(m.seed, tensor, vector, j, v.density);
  }
  float factor = 1.0f;
  if (m.rescale == Rescale::kDensity && v.density > 0) factor = static_cast<float>(1.0 / v.density);
  if (m.rescale == Rescale::kL1) {
    double all = 0, kept = 0;
    for (size_t j = 0; j < n; ++j) {
      all += std::fabs(static_cast<double>(d[j]));
      if (keep[j]) kept += std::fabs(static_cast<double>(d[j]));
    }
    if (all >= 1e-7 && kept >= 1e-7) factor = static_cast<float>(all / kept);
  }
  std::vector<float> t(n);
  for (size_t j = 0; j < n; ++j) t[j] = keep[j] ? d[j] * factor : 0.0f;
  return t;
}

float ref_combine(const RefMethod& m, const std::vector<std::vector<float>>& t, const std::vector<float>& w, size_t j) {
  if (!m.elect) {
    float sum = w[0] * t[0][j];
    for (size_t i = 1; i < t.size(); ++i) sum += w[i] * t[i][j];
    if (!m.normalize) return sum;
    float q = w[0];
    for (size_t i = 1; i < w.size(); ++i) q += w[i];
    return sum / (std::fabs(q) < 1e-8f ? 1.0f : q);
  }
  const auto vote = [&](size_t i) { return m.vote_weighted ? w[i] * t[i][j] : t[i][j]; };
  float s = vote(0);
  for (size_t i = 1; i < t.size(); ++i) s += vote(i);
  float sum = 0.0f, q = 0.0f;
  for (size_t i = 0; i < t.size(); ++i) {
    if (s >= 0 ? vote(i) > 0 : vote(i) < 0) {
      sum += w[i] * t[i][j];
      q += w[i];
    }
  }
  return m.normalize ? sum / (q == 0 ? 1.0f : q) : sum;
}

// A per-vector value as the job gets it and as the reference computes it.
struct Setting {
  ParamSetting given;
  std::function<double(const std::string& tensor, double t)> expected;
};

Setting constant(double v) {
  return {v, [v](const std::string&, double) { return v; }};
}

Setting gradient(double a, double b) {  // two points: linear in t
  return {ParamSetting::gradient({a, b}), [a, b](const std::string&, double t) { return (1 - t) * a + t * b; }};
}

Setting mlp_or(double mlp, double other) {
  return {ParamSetting::conditions({{"mlp", mlp}, {std::nullopt, other}}),
          [mlp, other](const std::string& tensor, double) { return tensor.find("mlp") != std::string::npos ? mlp : other; }};
}

struct VectorCase {
  Setting weight = constant(1.0);
  Setting density = constant(1.0);
  Setting gamma = constant(0.0);
};

struct MethodCase {
  const char* label;
  const char* method;
  RefMethod ref;
  ParamSettings params;  // the merge's (constant) parameters
  std::vector<VectorCase> vectors;
};

struct Case {
  MethodCase method;
  DType dtype;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.method.label << " " << dtype_name(c.dtype); }

std::vector<MethodCase> method_cases() {
  const RefMethod ties{Trim::kTopK, true, false, true};
  const RefMethod dare{Trim::kRandom, false, false, false, Rescale::kDensity, 7};
  return {
      {"magnitude_1", "magnitude", {Trim::kTopK}, {{"density", 0.3}}, {{.density = constant(0.3)}}},
      {"magnitude_2_l1",
       "magnitude",
       {Trim::kTopK, false, false, false, Rescale::kL1},
       {{"rescale", ParamSetting::word("l1")}},
       {{constant(0.7), gradient(0.1, 0.6)}, {mlp_or(0.4, 0.25), constant(0.3)}}},
      {"ties_1", "ties", ties, {{"density", 0.2}}, {{.density = constant(0.2)}}},
      {"ties_3",
       "ties",
       ties,
       {},
       {{constant(1.0), constant(0.3)}, {constant(0.6), constant(0.3)}, {constant(0.3), gradient(0.5, 0.2)}}},
      {"ties_3_weighted_vote",
       "ties",
       {Trim::kTopK, true, true, false},
       {{"vote", ParamSetting::word("weighted")}, {"normalize", ParamSetting::word("false")}},
       {{constant(1.0), constant(0.3)}, {constant(0.1), constant(0.5)}, {constant(0.3), constant(0.3)}}},
      {"dare_linear_1", "dare_linear", dare, {{"density", 0.3}, {"seed", 7}}, {{.density = constant(0.3)}}},
      {"dare_linear_2_l1",
       "dare_linear",
       {Trim::kRandom, false, false, false, Rescale::kL1, 7},
       {{"seed", 7}, {"rescale", ParamSetting::word("l1")}},
       {{constant(0.5), constant(0.4)}, {constant(0.5), gradient(0.2, 0.7)}}},
      {"dare_ties_3",
       "dare_ties",
       {Trim::kRandom, true, false, false, Rescale::kDensity, 3},
       {{"seed", 3}},
       {{constant(1.0), constant(0.4)}, {constant(0.8), constant(0.5)}, {constant(0.6), constant(0.6)}}},
      {"breadcrumbs_1",
       "breadcrumbs",
       {Trim::kBand},
       {{"density", 0.6}, {"gamma", 0.05}},
       {{.density = constant(0.6), .gamma = constant(0.05)}}},
      {"breadcrumbs_2",
       "breadcrumbs",
       {Trim::kBand},
       {},
       {{constant(0.5), constant(0.9), gradient(0.01, 0.2)}, {constant(0.5), constant(0.5), constant(0.6)}}},
      {"task_arithmetic_2_normalized",
       "task_arithmetic",
       {Trim::kNone, false, false, true},
       {{"normalize", ParamSetting::word("true")}},
       {{.weight = constant(0.3)}, {.weight = mlp_or(0.9, 0.1)}}},
  };
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    for (const auto& m : method_cases()) cases.push_back({m, dtype});
  }
  return cases;
}

using Family = test::OpenFamily;

class MethodExactness : public ::testing::TestWithParam<Case> {};

TEST_P(MethodExactness, EveryOutputMatchesTheScalarReferenceBitForBit) {
  const Case c = GetParam();
  const MethodCase& m = c.method;
  test::TempDir dir;
  std::vector<std::unique_ptr<Family>> families;
  for (size_t i = 0; i < m.vectors.size(); ++i) {
    FamilyOptions options;
    options.dtype = c.dtype;
    options.seed = 1 + i;
    options.post_delta = 0.3;
    write_family(dir / ("fam" + std::to_string(i)), options);
    families.push_back(std::make_unique<Family>(dir / ("fam" + std::to_string(i))));
  }
  const ModelFolder& target = *families[0]->target;
  JobInputs inputs{{}, &target};
  JobSpec spec;
  spec.method = &merge_method(m.method);
  spec.method_params = m.params;
  spec.weights = {0.5, 1.25};
  spec.output = dir / "out";
  spec.max_shard_bytes = 60'000;
  for (size_t i = 0; i < m.vectors.size(); ++i) {
    inputs.vectors.push_back({families[i]->pre.get(), families[i]->post.get()});
    const VectorCase& v = m.vectors[i];
    ParamSettings settings = {{"weight", v.weight.given}};
    if (find_param(*spec.method, "density")) settings.insert_or_assign("density", v.density.given);
    if (find_param(*spec.method, "gamma")) settings.insert_or_assign("gamma", v.gamma.given);
    spec.vector_params.push_back(settings);
  }
  const JobPlan plan = plan_job(inputs, spec);
  const JobResult result = run_job(inputs, spec, plan);
  EXPECT_EQ(result.bytes_read + result.bytes_skipped, plan.bytes_to_read);

  const uint64_t layers = *target.config()->num_hidden_layers;
  for (const auto& tensor : target.tensors()) {
    const std::string& name = tensor.name();
    const uint64_t n = tensor.info->element_count();
    // mergekit's positions (v0.1.2 on): layer L of N at L / (N - 1); the
    // tensors before and after the layers (embeddings, final norm, head) at 0.
    const double t = layer_index(name) ? static_cast<double>(*layer_index(name)) / static_cast<double>(layers - 1) : 0;
    std::vector<std::vector<float>> trimmed;
    std::vector<float> weights;
    for (size_t i = 0; i < m.vectors.size(); ++i) {
      const auto post = ref_values(*families[i]->post->find_resolving_tied(name), n);
      const auto pre = ref_values(*families[i]->pre->find_resolving_tied(name), n);
      std::vector<float> d(n);
      for (uint64_t j = 0; j < n; ++j) d[j] = post[j] - pre[j];
      const VectorCase& v = m.vectors[i];
      const RefVectorValues values{v.weight.expected(name, t), v.density.expected(name, t), v.gamma.expected(name, t)};
      trimmed.push_back(ref_trim(m.ref, d, values, name, i));
      weights.push_back(static_cast<float>(values.weight));
    }
    const auto base = ref_values(tensor, n);
    for (size_t k = 0; k < spec.weights.size(); ++k) {
      const auto out = ModelFolder::open(plan.outputs[k].string());
      const auto got = test::tensor_bytes(*out, name);
      const float w = static_cast<float>(spec.weights[k]);
      const size_t width = dtype_bits(c.dtype) / 8;
      ASSERT_EQ(got.size(), n * width);
      for (uint64_t j = 0; j < n; ++j) {
        std::byte expected[4];
        ref_encode(c.dtype, base[j] + w * ref_combine(m.ref, trimmed, weights, j), expected);
        ASSERT_EQ(std::memcmp(expected, got.data() + j * width, width), 0)
            << name << " element " << j << " of " << plan.outputs[k];
      }
    }
  }
}

// One file per output and three threads: two run later tensors' statistics
// passes ahead. Same bytes as one thread, and every byte read counted once.
// A generated family with deltas large enough to have many magnitudes.
class MethodFamily : public ::testing::Test {
 protected:
  static const std::filesystem::path& written(const test::TempDir& dir) {
    FamilyOptions options;
    options.post_delta = 0.3;
    write_family(dir.path(), options);
    return dir.path();
  }

  test::TempDir dir;
  const Family fam{written(dir)};
};

TEST_F(MethodFamily, StatisticsPassesRunAheadGiveTheSameBytes) {
  std::vector<std::string> outputs;
  for (const unsigned threads : {1u, 3u}) {
    JobSpec spec;
    spec.method = &merge_method("ties");
    spec.method_params = {{"density", 0.3}, {"rescale", ParamSetting::word("l1")}};
    spec.weights = {1.0};
    spec.threads = threads;
    spec.output = dir / ("out" + std::to_string(threads));
    const JobPlan plan = plan_job(fam.inputs(), spec);
    const JobResult result = run_job(fam.inputs(), spec, plan);
    EXPECT_EQ(result.bytes_read + result.bytes_skipped, plan.bytes_to_read) << threads;
    outputs.push_back(test::read_file(spec.output / "model.safetensors"));
  }
  EXPECT_TRUE(outputs[0] == outputs[1]);
}

// Feeds the vectors `d` (weights `w`) through a method's combiner as the
// executor would (its statistics passes, then tiles of `tile` elements in
// order) and returns δ.
std::vector<float> combine_vectors(const MergeMethod& method, const MethodParams& params,
                                   const std::vector<std::vector<float>>& d, const std::vector<double>& w, size_t tile,
                                   const char* tensor = "model.layers.0.mlp.up_proj.weight") {
  const size_t n = d[0].size();
  const std::vector<MethodParams> vector_params(d.size(), params);
  const TensorContext context{tensor, n, w, &params, vector_params};
  const auto combiner = method.begin_tensor(context);
  const unsigned passes = method.statistics_passes(context);
  for (unsigned pass = 0; pass < passes; ++pass) {
    for (size_t first = 0; first < n; first += tile) {
      for (size_t i = 0; i < d.size(); ++i) {
        combiner->observe(pass, i, first, std::span(d[i]).subspan(first, std::min(tile, n - first)));
      }
    }
    combiner->end_pass(pass);
  }
  std::vector<float> out(n), scratch(tile);
  std::vector<const float*> deltas(d.size());
  for (size_t first = 0; first < n; first += tile) {
    const size_t count = std::min(tile, n - first);
    for (size_t i = 0; i < d.size(); ++i) deltas[i] = d[i].data() + first;
    const float* result = combiner->combine(first, count, deltas, scratch.data());
    std::copy(result, result + count, out.begin() + first);
  }
  return out;
}

std::vector<float> combine_directly(const MergeMethod& method, const MethodParams& params, const std::vector<float>& d,
                                    size_t tile) {
  return combine_vectors(method, params, {d}, {1.0}, tile);
}

// Few distinct magnitudes, so that the k-th largest is tied many times over
// and across tiles: exactly k survive, the tied ones with the lowest indices.
TEST(MethodSelection, ExactlyKSurviveAndTiesGoToTheLowestIndices) {
  std::vector<float> d(50'001);
  for (size_t j = 0; j < d.size(); ++j) d[j] = static_cast<float>(static_cast<int>((j * 7919) % 9) - 4) * 0.5f;
  for (const double density : {0.0, 0.1, 0.37, 0.5, 0.999, 1.0}) {
    for (const char* name : {"magnitude", "breadcrumbs"}) {
      const MergeMethod& method = merge_method(name);
      const bool band = std::string(name) == "breadcrumbs";
      MethodParams given = {{"density", density}};
      if (band) given["gamma"] = 0.05;
      const MethodParams params = complete_params(method, given);
      const RefMethod ref{band ? Trim::kBand : Trim::kTopK};
      const auto expected = ref_trim(ref, d, {1, density, 0.05}, "t", 0);
      const auto got = combine_directly(method, params, d, 4096);
      ASSERT_EQ(std::memcmp(expected.data(), got.data(), d.size() * 4), 0) << name << " density " << density;
      const auto kept = std::ranges::count_if(got, [](float x) { return x != 0; });
      const auto zeros = std::ranges::count(d, 0.0f);
      EXPECT_LE(static_cast<size_t>(kept), static_cast<size_t>(std::floor(density * d.size()))) << name << density;
      if (!band && density * d.size() <= d.size() - zeros) {
        EXPECT_EQ(static_cast<size_t>(kept), static_cast<size_t>(std::floor(density * d.size()))) << density;
      }
    }
  }
}

// With one vector, δ is its trimmed tile itself only at weight 1 without an
// election: a weight of 0.3, and TIES' election (not normalized) over -0
// and NaN (which it sets to +0), must each come out as the reference says.
TEST(MethodSelection, OneVectorIsItsTrimmedSelfOnlyAtWeightOneWithoutElection) {
  std::vector<float> d(20'000);
  for (size_t j = 0; j < d.size(); ++j) d[j] = static_cast<float>(static_cast<int>((j * 7919) % 1001) - 500) * 1e-3f;
  struct OneVector {
    const char* method;
    RefMethod ref;
    MethodParams given;
    RefVectorValues values;
  };
  const std::vector<OneVector> cases = {
      {"magnitude", {Trim::kTopK}, {{"density", 0.3}}, {0.3, 0.3, 0}},
      {"breadcrumbs", {Trim::kBand}, {{"density", 0.5}, {"gamma", 0.05}}, {0.3, 0.5, 0.05}},
      {"dare_linear", {Trim::kRandom, false, false, false, Rescale::kDensity, 5}, {{"density", 0.3}, {"seed", 5}},
       {0.3, 0.3, 0}},
      {"ties", {Trim::kTopK, true, false, false}, {{"density", 1.0}, {"normalize", 0}}, {1, 1, 0}},
  };
  std::vector<float> odd = d;
  odd[3] = -0.0f;
  odd[4] = std::numeric_limits<float>::quiet_NaN();
  for (const OneVector& c : cases) {
    const MergeMethod& method = merge_method(c.method);
    const auto& input = std::string(c.method) == "ties" ? odd : d;
    const auto trimmed = ref_trim(c.ref, input, c.values, "model.layers.0.mlp.up_proj.weight", 0);
    const auto got = combine_vectors(method, complete_params(method, c.given), {input}, {c.values.weight}, 4096);
    for (size_t j = 0; j < d.size(); ++j) {
      const float expected = ref_combine(c.ref, {trimmed}, {static_cast<float>(c.values.weight)}, j);
      ASSERT_EQ(std::memcmp(&expected, &got[j], 4), 0) << c.method << " element " << j;
    }
  }
}

TEST(MethodSelection, DareKeepsAboutTheDensityShareWhateverTheTiling) {
  std::vector<float> d(100'000, 1.0f);
  const MergeMethod& method = merge_method("dare_linear");
  const MethodParams params = complete_params(method, {{"density", 0.25}, {"seed", 11}, {"rescale", 2}});
  const auto by_4096 = combine_directly(method, params, d, 4096);
  const auto by_999 = combine_directly(method, params, d, 999);
  EXPECT_EQ(by_4096, by_999);
  const auto kept = std::ranges::count(by_4096, 1.0f);
  EXPECT_NEAR(static_cast<double>(kept) / d.size(), 0.25, 0.01);
  for (size_t j = 0; j < d.size(); ++j) {
    ASSERT_EQ(by_4096[j] == 1.0f, ref_dare_keeps(11, "model.layers.0.mlp.up_proj.weight", 0, j, 0.25)) << j;
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, MethodExactness, ::testing::ValuesIn(all_cases()),
                         [](const auto& info) {
                           return std::string(info.param.method.label) + "_" + std::string(dtype_name(info.param.dtype));
                         });

}  // namespace
}  // namespace rvec

namespace rvec {
namespace {

// --- the random direction, from docs/merging.md ------------------------------------

constexpr uint64_t kRefGolden = 0x9E3779B97F4A7C15ull;

uint64_t ref_shuffle(uint64_t key, uint64_t n, uint64_t x) {
  int bits = 0;
  while (n > 1 && (uint64_t{1} << bits) <= n - 1) ++bits;  // bit_width(n - 1)
  const int h = std::max(1, (bits + 1) / 2);
  const uint64_t m = (uint64_t{1} << h) - 1;
  do {
    uint64_t left = x >> h, right = x & m;
    for (uint64_t k = 0; k < 4; ++k) {
      const uint64_t next = left ^ (ref_mix(key ^ (right + (k + 1) * kRefGolden)) & m);
      left = right;
      right = next;
    }
    x = (left << h) | right;
  } while (x >= n);
  return x;
}

// r of one vector: bins of the high 16 bits of |d|, their means in rank
// order, rescaled to ||d||, placed by the shuffle, signs from the key's stream.
std::vector<float> ref_random_direction(const std::vector<float>& d, uint64_t seed, const std::string& tensor,
                                        uint64_t vector) {
  const uint64_t key = ref_mix(ref_mix(ref_mix(seed) ^ ref_fnv1a(tensor)) + vector);
  std::map<uint32_t, std::pair<uint64_t, double>> bins;  // high bits -> (count, sum of |d|)
  double sum_sq = 0;
  for (const float x : d) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    auto& [count, sum] = bins[(bits & 0x7FFFFFFFu) >> 16];
    ++count;
    sum += std::fabs(static_cast<double>(x));
    sum_sq += static_cast<double>(x) * static_cast<double>(x);
  }
  double bins_sq = 0;
  for (const auto& [b, cs] : bins) bins_sq += static_cast<double>(cs.first) * (cs.second / cs.first) * (cs.second / cs.first);
  const double f = sum_sq == 0 ? 0.0 : std::sqrt(sum_sq / bins_sq);
  std::vector<float> by_rank;
  for (const auto& [b, cs] : bins) by_rank.insert(by_rank.end(), cs.first, static_cast<float>(cs.second / cs.first * f));
  std::vector<float> r(d.size());
  for (uint64_t j = 0; j < d.size(); ++j) {
    const float value = by_rank[ref_shuffle(key, d.size(), j)];
    r[j] = (ref_mix(key + (j + 1) * kRefGolden) >> 63) ? -value : value;
  }
  return r;
}

double norm_of(const std::vector<float>& x) {
  double sum = 0;
  for (const float v : x) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

std::vector<float> smooth_vector(size_t n, uint64_t seed) {
  std::vector<float> d(n);
  for (size_t j = 0; j < n; ++j) {
    const double u = static_cast<double>(ref_mix(seed * 1000003 + j) >> 11) / 9007199254740992.0;
    d[j] = static_cast<float>((u - 0.5) * (1.0 + static_cast<double>(j % 17)) * 1e-3);
  }
  return d;
}

// The random control: v's own magnitudes (up to its bin), shuffled and
// sign-flipped, with v's norm; the same bits for any tiling; a pure function
// of the seed.
TEST(RandomDirection, ShufflesAndFlipsTheVectorKeepingItsNorm) {
  const MergeMethod& method = merge_method("random");
  for (const size_t n : {size_t{1}, size_t{2}, size_t{1000}, size_t{40'001}}) {
    const auto d = smooth_vector(n, n);
    const MethodParams params = complete_params(method, {{"seed", 5}});
    const auto got = combine_vectors(method, params, {d}, {1.0}, 4096);
    EXPECT_EQ(got, combine_vectors(method, params, {d}, {1.0}, 999)) << n;
    const auto expected = ref_random_direction(d, 5, "model.layers.0.mlp.up_proj.weight", 0);
    ASSERT_EQ(std::memcmp(expected.data(), got.data(), n * 4), 0) << n;
    EXPECT_NEAR(norm_of(got), norm_of(d), 1e-6 * norm_of(d)) << n;
    if (n < 1000) continue;
    // Each of v's magnitudes used once, within its bin (2^-7) and the rescaling: sorted, they pair up.
    std::vector<float> a(d), b(got);
    for (auto& x : a) x = std::fabs(x);
    for (auto& x : b) x = std::fabs(x);
    std::ranges::sort(a);
    std::ranges::sort(b);
    for (size_t j = 0; j < n; ++j) ASSERT_NEAR(b[j], a[j], a[j] / 32 + 1e-12) << j;
    double dot = 0;
    for (size_t j = 0; j < n; ++j) dot += static_cast<double>(d[j]) * got[j];
    EXPECT_LT(std::fabs(dot) / (norm_of(d) * norm_of(got)), 0.05) << n;  // a random direction
    const auto negative = std::ranges::count_if(got, [](float x) { return x < 0; });
    EXPECT_NEAR(static_cast<double>(negative) / n, 0.5, 0.03) << n;
    const MethodParams other = complete_params(method, {{"seed", 6}});
    EXPECT_NE(combine_vectors(method, other, {d}, {1.0}, 4096), got);
  }
}

TEST(RandomDirection, SeveralVectorsAreEachRandomisedAndWeighted) {
  const MergeMethod& method = merge_method("random");
  const auto d0 = smooth_vector(3000, 1), d1 = smooth_vector(3000, 2);
  const MethodParams params = complete_params(method, {{"seed", 9}});
  const auto got = combine_vectors(method, params, {d0, d1}, {0.5, 2.0}, 1024);
  const auto r0 = ref_random_direction(d0, 9, "model.layers.0.mlp.up_proj.weight", 0);
  const auto r1 = ref_random_direction(d1, 9, "model.layers.0.mlp.up_proj.weight", 1);
  for (size_t j = 0; j < got.size(); ++j) ASSERT_EQ(got[j], 0.5f * r0[j] + 2.0f * r1[j]) << j;
}

TEST(RandomDirection, AZeroVectorStaysZero) {
  const std::vector<float> d(100, 0.0f);
  const auto got = combine_directly(merge_method("random"), complete_params(merge_method("random"), {}), d, 64);
  for (const float x : got) ASSERT_EQ(x, 0.0f);
}

// norm_matched: the second vector rescaled to the first's norm, tensor by tensor.
TEST(NormMatched, RescalesEveryVectorToTheFirstsNorm) {
  const MergeMethod& method = merge_method("norm_matched");
  const auto v = smooth_vector(5000, 3);
  auto c = smooth_vector(5000, 4);
  for (auto& x : c) x *= 0.25f;
  const MethodParams params = complete_params(method, {});
  const auto got = combine_vectors(method, params, {v, c}, {0.0, 1.0}, 777);
  EXPECT_NEAR(norm_of(got), norm_of(v), 1e-6 * norm_of(v));
  const auto f = static_cast<float>(norm_of(v) / norm_of(c));
  for (size_t j = 0; j < got.size(); ++j) ASSERT_EQ(got[j], 0.0f * v[j] + 1.0f * (f * c[j])) << j;
  // Alone, or both at weight 1: each vector at the first's norm.
  EXPECT_EQ(combine_vectors(method, params, {v}, {1.0}, 777), v);
  const auto both = combine_vectors(method, params, {v, c}, {1.0, 1.0}, 500);
  for (size_t j = 0; j < got.size(); ++j) ASSERT_EQ(both[j], v[j] + f * c[j]) << j;
}

// The first statistics pass finds most thresholds itself (the window guessed
// from a tensor's first elements, rank_select.hpp); a guess that misses takes
// the two fallback passes. With the guess made from 0, 7 or 50 elements (every path:
// always missing, mixed, mostly found) and with the default, TIES and
// breadcrumbs write the same bytes, and every planned byte is read or skipped.
TEST_F(MethodFamily, GuessedOrMissedThresholdsGiveTheSameBytes) {
  for (const char* method : {"ties", "breadcrumbs"}) {
    std::vector<std::string> outputs;
    std::vector<uint64_t> skipped;
    for (const char* sample : {"", "0", "7", "50"}) {
      if (*sample) setenv("RVEC_TEST_RANK_SAMPLE", sample, 1);
      JobSpec spec;
      spec.method = &merge_method(method);
      spec.weights = {1.0};
      spec.output = dir / fmt::format("{}-{}", method, sample);
      const JobPlan plan = plan_job(fam.inputs(), spec);
      const JobResult result = run_job(fam.inputs(), spec, plan);
      unsetenv("RVEC_TEST_RANK_SAMPLE");
      EXPECT_EQ(result.bytes_read + result.bytes_skipped, plan.bytes_to_read) << method << " " << sample;
      outputs.push_back(test::read_file(spec.output / "model.safetensors"));
      skipped.push_back(result.bytes_skipped);
    }
    for (size_t i = 1; i < outputs.size(); ++i) EXPECT_TRUE(outputs[i] == outputs[0]) << method << " " << i;
    EXPECT_GT(skipped[0], 0u) << method;           // the test family's tensors fit the default sample
    EXPECT_EQ(skipped[1], 0u) << method;           // no sample: every threshold takes the fallback passes
    EXPECT_LT(skipped[2], skipped[0]) << method;   // some guesses from 7 elements miss
  }
}

}  // namespace
}  // namespace rvec
