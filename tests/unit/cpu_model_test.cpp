// The cpu target against the fp32 reference on every oracle model: greedy tokens and logits per expert
// precision (tolerances stated in ferry/cpu_model.h), batching invariance, KV block reuse, errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"
#include "ferry/reference_model.h"
#include "test_util.h"

namespace ferry {
namespace {

constexpr int kGreedyTokens = 32;

struct Oracle {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<bool> all_positions;           // the oracle holds logits of every prompt position
  std::vector<std::vector<int32_t>> greedy;  // per prompt: 32 tokens of transformers' greedy decoding
};

Oracle read_oracle(const std::filesystem::path& dir) {
  auto f = SafetensorsFile::open(dir / "reference.safetensors");
  Oracle o;
  for (int i = 0;; ++i) {
    const std::string idx = std::to_string(i);
    if (!f->find("prompt." + idx)) break;
    auto ids = test::read_tensor<int64_t>(*f, "prompt." + idx);
    o.prompts.emplace_back(ids.begin(), ids.end());
    o.all_positions.push_back(f->find("logits." + idx) != nullptr);
    auto g = test::read_tensor<int64_t>(*f, "greedy." + idx);
    o.greedy.emplace_back(g.begin(), g.end());
  }
  return o;
}

int32_t argmax(const float* l, int n) {
  return static_cast<int32_t>(std::max_element(l, l + n) - l);
}

// One run over all prompts: batched prefill, then 31 batched decode steps.
struct Trace {
  std::vector<std::vector<float>> logits;    // per prompt: every row the model returned, in order
  std::vector<std::vector<int32_t>> greedy;  // per prompt: the model's argmax at each of the 32 steps
};

// Feeds `forced` tokens when given (teacher forcing: both models see the same history, so their logits
// compare step by step), else the model's own argmax.
Trace run(Model& m, const Oracle& o, const std::vector<std::vector<int32_t>>* forced) {
  const int V = m.config().n_vocab;
  const size_t n = o.prompts.size();
  Trace tr;
  tr.logits.resize(n);
  tr.greedy.resize(n);
  std::vector<int> seqs;
  std::vector<ForwardItem> items;
  for (size_t i = 0; i < n; ++i) {
    seqs.push_back(m.add_sequence());
    items.push_back({seqs.back(), o.prompts[i], static_cast<bool>(o.all_positions[i])});
  }
  std::vector<float> logits = m.forward(items);
  std::vector<int32_t> next(n);
  size_t row = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t rows = o.all_positions[i] ? o.prompts[i].size() : 1;
    tr.logits[i].assign(logits.begin() + row * V, logits.begin() + (row + rows) * V);
    row += rows;
    tr.greedy[i].push_back(argmax(logits.data() + (row - 1) * V, V));
  }
  EXPECT_EQ(row * V, logits.size());
  for (int step = 1; step < kGreedyTokens; ++step) {
    items.clear();
    for (size_t i = 0; i < n; ++i) {
      next[i] = forced ? (*forced)[i][step - 1] : tr.greedy[i].back();
      items.push_back({seqs[i], std::span<const int32_t>(&next[i], 1), false});
    }
    logits = m.forward(items);
    for (size_t i = 0; i < n; ++i) {
      tr.logits[i].insert(tr.logits[i].end(), logits.begin() + i * V, logits.begin() + (i + 1) * V);
      tr.greedy[i].push_back(argmax(logits.data() + i * V, V));
    }
  }
  for (int s : seqs) m.free_sequence(s);
  return tr;
}

// Row errors: per row of logits, max |got - want| divided by the range of `want`'s logits of that prompt.
std::vector<double> row_errors(const Trace& got, const Trace& want, int V) {
  std::vector<double> errs;
  for (size_t i = 0; i < want.logits.size(); ++i) {
    const auto& w = want.logits[i];
    EXPECT_EQ(got.logits[i].size(), w.size());
    auto [lo, hi] = std::minmax_element(w.begin(), w.end());
    for (size_t r = 0; r < w.size() / V; ++r) {
      double d = 0;
      for (size_t j = r * V; j < (r + 1) * V; ++j)
        d = std::max(d, std::fabs(static_cast<double>(got.logits[i][j]) - w[j]));
      errs.push_back(d / (*hi - *lo));
    }
  }
  std::sort(errs.begin(), errs.end());
  return errs;
}

double quantile(const std::vector<double>& sorted, double q) {
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()))];
}

void expect_within(const std::string& what, const std::vector<double>& errs, const LogitErrorBound& bound) {
  const double median = quantile(errs, 0.5), p90 = quantile(errs, 0.9), max = errs.back();
  std::printf("  %-44s row error median %.1e p90 %.1e max %.1e (%zu rows)\n", what.c_str(), median, p90, max,
              errs.size());
  EXPECT_LE(median, bound.median) << what;
  EXPECT_LE(p90, bound.p90) << what;
  EXPECT_LE(max, bound.max) << what;
}

// Share of the 32 positions per prompt where the model's argmax is the token it was forced to follow.
double forced_top1_agreement(const Trace& forced_run, const std::vector<std::vector<int32_t>>& tokens) {
  size_t agree = 0, total = 0;
  for (size_t i = 0; i < tokens.size(); ++i)
    for (size_t j = 0; j < tokens[i].size(); ++j, ++total) agree += forced_run.greedy[i][j] == tokens[i][j];
  return static_cast<double>(agree) / total;
}

// Tokens produced before the first divergence from `want`, over all prompts, as a share of all tokens.
double greedy_agreement(const std::vector<std::vector<int32_t>>& got,
                        const std::vector<std::vector<int32_t>>& want) {
  size_t agree = 0, total = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    size_t j = 0;
    while (j < want[i].size() && got[i][j] == want[i][j]) ++j;
    agree += j;
    total += want[i].size();
  }
  return static_cast<double>(agree) / total;
}

CpuModelOptions options_for(DType expert_dtype, DType kv_dtype = DType::BF16) {
  CpuModelOptions o;
  o.expert_dtype = expert_dtype;
  o.kv_dtype = kv_dtype;
  return o;
}

// The fp32 reference, run once per fixture and shared by the tests.
struct Fixture {
  std::unique_ptr<Checkpoint> ckpt;
  Oracle oracle;
  Trace reference;  // forced with the oracle's greedy tokens
};

const Fixture& fixture(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Fixture>> cache;
  auto& f = cache[name];
  if (!f) {
    f = std::make_unique<Fixture>();
    const auto dir = test::oracle_dir(name);
    f->ckpt = Checkpoint::open(dir);
    f->oracle = read_oracle(dir);
    ReferenceModel ref(load_weights_f32(*f->ckpt));
    f->reference = run(ref, f->oracle, &f->oracle.greedy);
  }
  return *f;
}

class CpuModelOracle : public ::testing::TestWithParam<std::string> {
 protected:
  const Fixture& f() { return fixture(GetParam()); }
  int n_vocab() { return f().ckpt->config().n_vocab; }
  std::string tag(const std::string& what) { return GetParam() + " " + what; }
};

// bf16 experts with an f32 KV cache: the reference's arithmetic up to f32 rounding, greedy tokens identical
// to transformers' (and so to the reference's).
TEST_P(CpuModelOracle, Bf16ExpertsF32KvMatchTheReferenceExactly) {
  CpuModel model(*f().ckpt, options_for(DType::BF16, DType::F32));
  const Trace free_run = run(model, f().oracle, nullptr);
  for (size_t i = 0; i < f().oracle.prompts.size(); ++i)
    EXPECT_EQ(free_run.greedy[i], f().oracle.greedy[i]) << GetParam() << " prompt " << i;
  expect_within(tag("bf16, f32 KV vs reference"), row_errors(free_run, f().reference, n_vocab()),
                kCpuErrorExact);
}

// The defaults: bf16 experts, bf16 KV cache.
TEST_P(CpuModelOracle, Bf16ExpertsBf16KvWithinTolerance) {
  CpuModel model(*f().ckpt);
  const Trace forced = run(model, f().oracle, &f().oracle.greedy);
  expect_within(tag("bf16, bf16 KV vs reference"), row_errors(forced, f().reference, n_vocab()),
                kCpuErrorBf16Kv);
  const double top1 = forced_top1_agreement(forced, f().oracle.greedy);
  std::printf("  %s bf16, bf16 KV: teacher-forced top-1 agreement %.3f\n", GetParam().c_str(), top1);
  EXPECT_GE(top1, kCpuTop1AgreementBf16Kv);
}

TEST_P(CpuModelOracle, Bf16ActivationsWithinTolerance) {
  CpuModelOptions o;
  o.bf16_activations = true;
  CpuModel model(*f().ckpt, o);
  const Trace forced = run(model, f().oracle, &f().oracle.greedy);
  expect_within(tag("bf16 activations vs reference"), row_errors(forced, f().reference, n_vocab()),
                kCpuErrorBf16Activations);
  EXPECT_GE(forced_top1_agreement(forced, f().oracle.greedy), kCpuTop1AgreementBf16Activations);
}

// int8 / int4 experts: the kernels alone (f32 KV, against a reference holding the same quantised expert
// weights), then the defaults against the unquantised reference, and top-1 agreement.
void check_quantised(const Fixture& f, const std::string& name, DType dtype,
                     const LogitErrorBound& kernel_bound, const LogitErrorBound& total_bound,
                     double min_top1) {
  const int V = f.ckpt->config().n_vocab;
  const std::string tag = name + " " + std::string(dtype_name(dtype));
  {
    CpuModel model(*f.ckpt, options_for(dtype, DType::F32));
    WeightsF32 w = load_weights_f32(*f.ckpt);
    apply_expert_quantisation(w, dtype, model.options().group_size);
    ReferenceModel quantised_ref(std::move(w));
    const Trace want = run(quantised_ref, f.oracle, &f.oracle.greedy);
    expect_within(tag + ", f32 KV vs same-weights reference",
                  row_errors(run(model, f.oracle, &f.oracle.greedy), want, V), kernel_bound);
  }
  CpuModel model(*f.ckpt, options_for(dtype));
  const Trace forced = run(model, f.oracle, &f.oracle.greedy);
  expect_within(tag + ", bf16 KV vs reference", row_errors(forced, f.reference, V), total_bound);
  const double top1 = forced_top1_agreement(forced, f.oracle.greedy);
  const double greedy = greedy_agreement(run(model, f.oracle, nullptr).greedy, f.oracle.greedy);
  std::printf(
      "  %s: teacher-forced top-1 agreement %.3f; free-running greedy tokens before the first divergence "
      "%.3f\n",
      tag.c_str(), top1, greedy);
  EXPECT_GE(top1, min_top1) << tag;
}

TEST_P(CpuModelOracle, Int8ExpertsWithinTolerance) {
  check_quantised(f(), GetParam(), DType::I8, kCpuErrorI8Kernel, kCpuErrorI8, kCpuTop1AgreementI8);
}

TEST_P(CpuModelOracle, Int4ExpertsWithinTolerance) {
  check_quantised(f(), GetParam(), DType::I4, kCpuErrorI4Kernel, kCpuErrorI4, kCpuTop1AgreementI4);
}

INSTANTIATE_TEST_SUITE_P(Oracles, CpuModelOracle, ::testing::ValuesIn(test::oracle_fixtures()),
                         [](const auto& info) { return info.param; });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CpuModelOracle);

// ---- batching, KV cache, errors (on one model with tied embeddings and a 32000-token vocabulary) ----

const char* kModel = "mixtral_spm";

std::vector<int32_t> prompt_of(int length, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back(1 + (i * 7919 + salt * 104729) % 31000);
  return p;
}

// A mixed batch (prompts of different lengths, decoding sequences beside a prefilling one) gives the
// same logits as every sequence run alone.
TEST(CpuModel, MixedLengthBatchEqualsOneAtATime) {
  const Fixture& f = fixture(kModel);
  CpuModel model(*f.ckpt);
  const int V = model.config().n_vocab;
  const std::vector<std::vector<int32_t>> prompts = {prompt_of(5, 1), prompt_of(37, 2), prompt_of(1, 3),
                                                     prompt_of(18, 4)};
  const std::vector<int32_t> continuation = {11, 222, 3333, 444, 55, 6};

  // Alone: each prompt, then its continuation one token at a time. Rows: last prompt logit, then one per
  // step.
  std::vector<std::vector<float>> alone(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int s = model.add_sequence();
    ForwardItem item{s, prompts[i], false};
    alone[i] = model.forward(std::span<const ForwardItem>(&item, 1));
    for (const int32_t& t : continuation) {
      ForwardItem step{s, std::span<const int32_t>(&t, 1), false};
      const std::vector<float> l = model.forward(std::span<const ForwardItem>(&step, 1));
      alone[i].insert(alone[i].end(), l.begin(), l.end());
    }
    model.free_sequence(s);
  }

  // Together: prompt 0 starts alone; then prompts 1..3 prefill in the same forward as prompt 0's first
  // decode step; then everyone decodes together.
  std::vector<std::vector<float>> together(prompts.size());
  std::vector<int> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.push_back(model.add_sequence());
  ForwardItem first{seqs[0], prompts[0], false};
  together[0] = model.forward(std::span<const ForwardItem>(&first, 1));
  std::vector<size_t> fed(prompts.size(), 0);
  {
    std::vector<ForwardItem> items = {{seqs[1], prompts[1], false},
                                      {seqs[0], std::span<const int32_t>(&continuation[0], 1), false},
                                      {seqs[2], prompts[2], false},
                                      {seqs[3], prompts[3], false}};
    const std::vector<float> l = model.forward(items);
    const size_t order[] = {1, 0, 2, 3};
    for (size_t r = 0; r < 4; ++r)
      together[order[r]].insert(together[order[r]].end(), l.begin() + r * V, l.begin() + (r + 1) * V);
    fed[0] = 1;
  }
  for (;;) {
    std::vector<ForwardItem> items;
    std::vector<size_t> who;
    for (size_t i = 0; i < prompts.size(); ++i)
      if (fed[i] < continuation.size()) {
        items.push_back({seqs[i], std::span<const int32_t>(&continuation[fed[i]], 1), false});
        who.push_back(i);
        fed[i]++;
      }
    if (items.empty()) break;
    const std::vector<float> l = model.forward(items);
    for (size_t r = 0; r < who.size(); ++r)
      together[who[r]].insert(together[who[r]].end(), l.begin() + r * V, l.begin() + (r + 1) * V);
  }

  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(together[i].size(), alone[i].size()) << "prompt " << i;
    auto [lo, hi] = std::minmax_element(alone[i].begin(), alone[i].end());
    float max_diff = 0;
    for (size_t j = 0; j < alone[i].size(); ++j)
      max_diff = std::max(max_diff, std::fabs(together[i][j] - alone[i][j]));
    // Every row is computed by the same kernels in the same order whatever the batch: bit-identical.
    EXPECT_EQ(max_diff, 0.0f) << "prompt " << i << ": " << max_diff / (*hi - *lo) << " x logit range";
  }
}

// The time of every forward is charged to its phase (a forward of one token per item is a decode step)
// and split into parts that add up to at most the whole.
TEST(CpuModel, ForwardTimesCountEachPhaseAndSplitIntoParts) {
  const Fixture& f = fixture(kModel);
  CpuModel model(*f.ckpt);
  const CpuForwardTimes& t = model.forward_times();
  EXPECT_EQ(t.prefill.forwards + t.decode.forwards, 0);
  const std::vector<int32_t> prompt = prompt_of(21, 5);
  const int a = model.add_sequence(), b = model.add_sequence();
  std::vector<ForwardItem> prefill = {{a, prompt, false}, {b, std::span<const int32_t>(prompt.data(), 9), false}};
  model.forward(prefill);
  const int32_t next = 17;
  for (int step = 0; step < 3; ++step) {
    std::vector<ForwardItem> decode = {{a, std::span<const int32_t>(&next, 1), false},
                                       {b, std::span<const int32_t>(&next, 1), false}};
    model.forward(decode);
  }
  EXPECT_EQ(t.prefill.forwards, 1);
  EXPECT_EQ(t.prefill.tokens, 30);
  EXPECT_EQ(t.decode.forwards, 3);
  EXPECT_EQ(t.decode.tokens, 6);
  for (const CpuPartSeconds* p : {&t.prefill, &t.decode}) {
    EXPECT_GT(p->dense, 0);
    EXPECT_GT(p->attention, 0);
    EXPECT_GT(p->experts, 0);  // a MoE model
    EXPECT_GT(p->head, 0);
    EXPECT_LE(p->dense + p->attention + p->experts + p->head, p->total * (1 + 1e-9));
  }
}

TEST(CpuModel, FreedSequencesReturnTheirKvBlocks) {
  const Fixture& f = fixture(kModel);
  CpuModelOptions o;
  o.kv_cache_tokens = 256;  // 16 blocks of 16 tokens
  CpuModel model(*f.ckpt, o);
  const CpuModel::KvStats empty = model.kv_stats();
  ASSERT_EQ(empty.blocks_total, 16);
  ASSERT_EQ(empty.blocks_free, 16);
  const std::vector<int32_t> prompt = prompt_of(60, 9);  // 4 blocks each

  auto fill = [&] {
    std::vector<int> seqs;
    std::vector<float> logits;
    for (int i = 0; i < 4; ++i) {
      seqs.push_back(model.add_sequence());
      ForwardItem item{seqs.back(), prompt, false};
      const std::vector<float> l = model.forward(std::span<const ForwardItem>(&item, 1));
      logits.insert(logits.end(), l.begin(), l.end());
      EXPECT_EQ(model.kv_stats().blocks_free, 16 - 4 * (i + 1));
    }
    return std::make_pair(seqs, logits);
  };
  auto [seqs, first] = fill();
  // The cache is full: one more sequence cannot start, and the failed forward changes nothing.
  const int extra = model.add_sequence();
  ForwardItem item{extra, prompt, false};
  EXPECT_THROW(model.forward(std::span<const ForwardItem>(&item, 1)), Error);
  EXPECT_EQ(model.sequence_length(extra), 0);
  EXPECT_EQ(model.kv_stats().blocks_free, 0);
  model.free_sequence(extra);

  for (int s : seqs) model.free_sequence(s);
  EXPECT_EQ(model.kv_stats().blocks_free, 16);
  auto [seqs2, second] = fill();
  EXPECT_EQ(model.kv_stats().arena_bytes, empty.arena_bytes);
  EXPECT_EQ(first, second);  // reused blocks hold nothing of their previous owner
  for (int s : seqs2) model.free_sequence(s);
  EXPECT_EQ(model.kv_stats().blocks_free, 16);
}

TEST(CpuModel, RejectsBadInputsBeforeChangingAnything) {
  const Fixture& f = fixture(kModel);
  CpuModel model(*f.ckpt);
  const int s = model.add_sequence();
  const std::vector<int32_t> bad_token = {5, 32000};
  ForwardItem item{s, bad_token, false};
  EXPECT_THROW(model.forward(std::span<const ForwardItem>(&item, 1)), Error);
  const std::vector<int32_t> too_long(model.config().max_position + 1, 7);
  item.tokens = too_long;
  EXPECT_THROW(model.forward(std::span<const ForwardItem>(&item, 1)), Error);
  EXPECT_EQ(model.sequence_length(s), 0);
  EXPECT_EQ(model.kv_stats().blocks_free, model.kv_stats().blocks_total);

  CpuModelOptions o;
  o.expert_dtype = DType::I4;
  o.group_size = 40;
  EXPECT_THROW(CpuModel(*f.ckpt, o), Error);
  o = {};
  o.kv_dtype = DType::I8;
  EXPECT_THROW(CpuModel(*f.ckpt, o), Error);
}

TEST(CpuModel, FactoryBuildsTheCpuTarget) {
  const Fixture& f = fixture(kModel);
  TargetOptions t;
  t.target = "cpu";
  t.expert_dtype = "int4";
  auto model = create_model(*f.ckpt, t);
  ASSERT_NE(dynamic_cast<CpuModel*>(model.get()), nullptr);
  EXPECT_EQ(dynamic_cast<CpuModel*>(model.get())->options().expert_dtype, DType::I4);
  t.expert_dtype = "int3";
  EXPECT_THROW(create_model(*f.ckpt, t), Error);
}

TEST(CpuModel, GenerateCommandRunsOnTheCpuTarget) {
  const std::string model =
      "--model '" + test::oracle_dir(kModel).string() + "' -p Hello -n 16 -q --temperature 0";
  const test::CommandResult int4 = test::run_ferry("generate --target cpu --expert-dtype int4 " + model);
  EXPECT_EQ(int4.exit_code, 0) << int4.err;
  EXPECT_FALSE(int4.out.empty());
  // bf16 experts with an f32 KV cache decode greedily to the reference's text.
  const test::CommandResult bf16 = test::run_ferry("generate --target cpu --kv-dtype f32 " + model);
  const test::CommandResult ref = test::run_ferry("generate --target reference " + model);
  EXPECT_EQ(bf16.exit_code, 0) << bf16.err;
  EXPECT_EQ(bf16.out, ref.out);
  const test::CommandResult bad = test::run_ferry("generate --target cpu --expert-dtype int3 " + model);
  EXPECT_NE(bad.exit_code, 0);
}

}  // namespace
}  // namespace ferry
