// What a lower expert precision costs in quality, measured on a trained model's held-out text: for each
// expert precision of the cpu target, the held-out perplexity, and against the bf16 run the mean KL
// divergence KL(bf16 || q) of the next-token distributions and the share of positions whose top-1 token
// is the same. Every position of every held-out line (the bundled model's heldout.txt: one document per line;
// up to --tokens predicted positions, lines cut at --context tokens) is teacher-forced.
//
// Then substitution on a miss (HOBBIT; CpuModelOptions::substitute_below): under a DRAM budget of 3/8 of the
// experts, decoding one token at a time, a missed expert every token of which weighs it below a threshold runs
// from its int4 copy instead of being read; per threshold the same scores, the share of (token, expert)
// assignments substituted and the expert bytes read from the store per token.
//
//   bench_quality [--model DIR] [--heldout FILE] [--tokens 4000] [--context 512] [--group-size 64]
//                 [--substitute 0,0.2,0.35,0.5,1]
// Defaults: the bundled trained model (tools/data/tiny_moe) and its heldout.txt.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <filesystem>
#include <span>

#include "ferry/checkpoint.h"
#include "ferry/cpu_model.h"
#include "ferry/experts/packed_store.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"
#include "ferry/reference_model.h"
#include "ferry/tokenizer.h"

using namespace ferry;

namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

struct Scores {
  double nll = 0, kl = 0;
  int64_t n = 0, same_top1 = 0;
};

// log-softmax of one row, in double
void log_softmax(const float* row, int V, std::vector<double>& out) {
  const float mx = *std::max_element(row, row + V);
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - mx);
  const double log_z = std::log(sum) + mx;
  out.resize(V);
  for (int v = 0; v < V; ++v) out[v] = row[v] - log_z;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model = std::string(FERRY_SOURCE_DIR) + "/tools/data/tiny_moe", heldout;
    int64_t max_tokens = 4000;
    int context = 512, group = 64;
    std::vector<double> substitute_thresholds = {0, 0.2, 0.35, 0.5, 1.0};
    for (int i = 1; i < argc; ++i) {
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw Error(std::string(argv[i]) + " needs a value");
        return argv[++i];
      };
      if (!std::strcmp(argv[i], "--model")) model = value();
      else if (!std::strcmp(argv[i], "--heldout")) heldout = value();
      else if (!std::strcmp(argv[i], "--tokens")) max_tokens = std::stoll(value());
      else if (!std::strcmp(argv[i], "--context")) context = std::stoi(value());
      else if (!std::strcmp(argv[i], "--group-size")) group = std::stoi(value());
      else if (!std::strcmp(argv[i], "--substitute")) {  // comma-separated thresholds; "" none
        substitute_thresholds.clear();
        std::string list = value();
        for (size_t at = 0; at < list.size();) {
          const size_t comma = std::min(list.find(',', at), list.size());
          substitute_thresholds.push_back(std::stod(list.substr(at, comma - at)));
          at = comma + 1;
        }
      } else
        throw Error("usage: bench_quality [--model DIR] [--heldout FILE] [--tokens N] [--context N] [--group-size G] "
                    "[--substitute T1,T2,...]");
    }
    if (heldout.empty()) heldout = model + "/heldout.txt";
    auto ckpt = Checkpoint::open(model);
    auto tok = load_tokenizer(model);
    const int V = ckpt->config().n_vocab;

    // the held-out paragraphs as token sequences, up to max_tokens predicted positions
    std::vector<std::vector<int32_t>> texts;
    int64_t positions = 0;
    std::ifstream in(heldout);
    if (!in) throw Error("cannot open " + heldout);
    for (std::string line; positions < max_tokens && std::getline(in, line);) {
      std::vector<int32_t> ids = tok->encode(line, true);
      if (ids.size() < 2) continue;
      if (static_cast<int>(ids.size()) > context) ids.resize(context);
      positions += static_cast<int64_t>(ids.size()) - 1;
      texts.push_back(std::move(ids));
    }

    // Rows: the cpu target at each expert precision (bf16 first: the others compare to it), the fp32
    // reference; then substitution on a miss: the model converted to a packed store with bf16 and int4 experts,
    // run under a DRAM budget of 3 of every 8 experts (LRU), one token at a time as decode runs, a missed expert
    // served by its int4 copy when every token weighs it below the threshold (0: never).
    struct Row {
      std::string name;
      std::string precision;      // cpu target's experts; "reference": the fp32 reference
      double substitute = -1;     // >= 0: the substitution rows (decode, from the store, under the budget)
    };
    std::vector<Row> rows = {{"cpu, bf16 experts", "bf16"},
                             {"reference (fp32)", "reference"},
                             {"cpu, int8 experts", "int8"},
                             {"cpu, int4 experts", "int4"}};
    for (double t : substitute_thresholds)
      rows.push_back({t == 0 ? std::string("3/8 in DRAM, no subst.") : "3/8 in DRAM, subst. <" + number(t), "bf16", t});
    std::filesystem::path store;
    if (!substitute_thresholds.empty()) {
      store = std::filesystem::temp_directory_path() / ("ferry-quality-store-" + std::to_string(getpid()));
      std::filesystem::remove_all(store);
      experts::ConvertOptions co;
      co.precisions = {DType::BF16, DType::I4};
      co.group_size = group;
      experts::convert_to_store(*ckpt, store, co);
    }
    const double expert_bytes = static_cast<double>(ckpt->config().n_moe_layers()) * ckpt->config().n_expert *
                                ckpt->config().params_per_expert() * 2;
    std::vector<std::vector<float>> base;  // the bf16 run's logits, per text
    std::vector<double> lp, lq;
    std::printf("%s: %zu held-out lines, %lld predicted positions, vocabulary %d\n", model.c_str(), texts.size(),
                static_cast<long long>(positions), V);
    std::printf("%-26s %10s %14s %12s %12s %12s\n", "run", "perplexity", "KL vs bf16", "top-1 same", "substituted",
                "MB read/tok");
    for (const Row& row : rows) {
      std::unique_ptr<Model> m;
      std::unique_ptr<Checkpoint> store_ckpt;
      if (row.precision == "reference") {
        m = std::make_unique<ReferenceModel>(load_weights_f32(*ckpt));
      } else {
        TargetOptions t;
        t.target = "cpu";
        t.expert_dtype = row.precision;
        t.group_size = group;
        t.kv_dtype = "f32";
        if (row.substitute >= 0) {
          store_ckpt = Checkpoint::open(store);
          t.dram_budget_gb = expert_bytes * 3 / 8 / 1e9;
          t.substitute_below = row.substitute;
        }
        m = create_model(store_ckpt ? *store_ckpt : *ckpt, t);
      }
      const bool is_base = base.empty();
      Scores s;
      for (size_t i = 0; i < texts.size(); ++i) {
        const std::vector<int32_t>& ids = texts[i];
        const int seq = m->add_sequence();
        std::vector<float> logits;
        if (row.substitute < 0) {
          logits = m->forward(std::vector<ForwardItem>{{seq, ids, true}});
        } else {  // decode: one token at a time, teacher-forced
          for (size_t p = 0; p + 1 < ids.size(); ++p) {
            const std::vector<float> l = m->forward(std::vector<ForwardItem>{{seq, std::span(&ids[p], 1), false}});
            logits.insert(logits.end(), l.begin(), l.end());
          }
        }
        m->free_sequence(seq);
        if (is_base) base.push_back(logits);
        for (size_t p = 0; p + 1 < ids.size(); ++p) {
          const float* row_q = logits.data() + p * V;
          log_softmax(row_q, V, lq);
          s.nll -= lq[ids[p + 1]];
          ++s.n;
          if (base.size() > i) {
            const float* row_p = base[i].data() + p * V;
            log_softmax(row_p, V, lp);
            double kl = 0;
            for (int v = 0; v < V; ++v) kl += std::exp(lp[v]) * (lp[v] - lq[v]);
            s.kl += kl;
            s.same_top1 += (std::max_element(row_p, row_p + V) - row_p) == (std::max_element(row_q, row_q + V) - row_q);
          }
        }
      }
      std::string substituted = "-", read = "-";
      if (const auto* cpu = dynamic_cast<const CpuModel*>(m.get()); cpu && row.substitute >= 0) {
        const SubstitutionStats& sub = cpu->substitution_stats();
        const experts::TieredExpertsStats* t = cpu->expert_tier_stats();
        const double assignments = static_cast<double>(s.n) * ckpt->config().n_moe_layers() * ckpt->config().n_expert_used;
        substituted = number(100.0 * static_cast<double>(sub.assignments) / assignments) + "%";
        read = number(t ? static_cast<double>(t->bytes_read) / 1e6 / static_cast<double>(s.n) : 0);
      }
      if (is_base)
        std::printf("%-26s %10.3f %14s %12s %12s %12s\n", row.name.c_str(), std::exp(s.nll / s.n), "-", "-",
                    substituted.c_str(), read.c_str());
      else
        std::printf("%-26s %10.3f %14.6f %11.2f%% %12s %12s\n", row.name.c_str(), std::exp(s.nll / s.n), s.kl / s.n,
                    100.0 * s.same_top1 / s.n, substituted.c_str(), read.c_str());
      std::fflush(stdout);
    }
    if (!store.empty()) std::filesystem::remove_all(store);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_quality: %s\n", e.what());
    return 1;
  }
}
