// What a lower expert precision costs in quality, measured on a trained model's held-out text: for each
// expert precision of the cpu target, the held-out perplexity, and against the bf16 run the mean KL
// divergence KL(bf16 || q) of the next-token distributions and the share of positions whose top-1 token
// is the same. Every position of every held-out line (the bundled model's heldout.txt: one document per line;
// up to --tokens predicted positions, lines cut at --context tokens) is teacher-forced.
//
//   bench_quality [--model DIR] [--heldout FILE] [--tokens 4000] [--context 512] [--group-size 64]
// Defaults: the bundled trained model (tools/data/tiny_moe) and its heldout.txt.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/error.h"
#include "ferry/model_factory.h"
#include "ferry/reference_model.h"
#include "ferry/tokenizer.h"

using namespace ferry;

namespace {

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
      else throw Error("usage: bench_quality [--model DIR] [--heldout FILE] [--tokens N] [--context N] [--group-size G]");
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

    const char* const kRows[] = {"bf16", "reference", "int8", "int4"};  // bf16 first: the others compare to it
    std::vector<std::vector<float>> base;  // the bf16 run's logits, per text
    std::vector<double> lp, lq;
    std::printf("%s: %zu held-out lines, %lld predicted positions, vocabulary %d\n", model.c_str(), texts.size(),
                static_cast<long long>(positions), V);
    std::printf("%-22s %10s %14s %12s\n", "run", "perplexity", "KL vs bf16", "top-1 same");
    for (const char* row : kRows) {
      std::unique_ptr<Model> m;
      if (!std::strcmp(row, "reference")) {
        m = std::make_unique<ReferenceModel>(load_weights_f32(*ckpt));
      } else {
        TargetOptions t;
        t.target = "cpu";
        t.expert_dtype = row;
        t.group_size = group;
        t.kv_dtype = "f32";
        m = create_model(*ckpt, t);
      }
      const bool is_base = !std::strcmp(row, "bf16");
      Scores s;
      for (size_t i = 0; i < texts.size(); ++i) {
        const std::vector<int32_t>& ids = texts[i];
        const int seq = m->add_sequence();
        const std::vector<float> logits = m->forward(std::vector<ForwardItem>{{seq, ids, true}});
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
      const std::string name = std::strcmp(row, "reference") ? std::string("cpu, ") + row + " experts"
                                                              : std::string("reference (fp32)");
      if (base.empty())
        std::printf("%-22s %10.3f %14s %12s\n", name.c_str(), std::exp(s.nll / s.n), "-", "-");
      else
        std::printf("%-22s %10.3f %14.6f %11.2f%%\n", name.c_str(), std::exp(s.nll / s.n), s.kl / s.n,
                    100.0 * s.same_top1 / s.n);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_quality: %s\n", e.what());
    return 1;
  }
}
