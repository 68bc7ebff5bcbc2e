// ferry_ops: the op harness binary.
//   ferry_ops [--check]            every case on every backend vs its reference (ctest runs this): the cpu
//                                  ops at every ISA level this CPU has, and cuda (skipped, with the
//                                  reason, where the case has no CUDA implementation, the build has no
//                                  CUDA or there is no GPU); --backend cpu|cuda|all (default all)
//   ferry_ops --perf               large shapes: time, GFLOP/s, GB/s, fraction of the measured roofline
//   ferry_ops --targets            the performance targets only, with pass / miss
//   options: --filter NAME (substring of the op name or parameters), --reps N, --threads N, --list
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "ferry/cpu_features.h"
#include "ferry/ops/isa.h"
#include "ferry/roofline_probe.h"
#include "tests/ops/cuda_backend.h"
#include "tests/ops/harness.h"

namespace ferry::ops_test {
namespace {

struct Options {
  enum class Mode { Check, Perf, Targets } mode = Mode::Check;
  bool cpu = true, cuda = true;  // --backend
  std::string filter;
  int reps = 0;
  bool list = false;
};

bool matches(const OpCase& c, const std::string& filter) {
  if (filter.empty()) return true;
  return c.op().find(filter) != std::string::npos || (c.op() + " " + c.params()).find(filter) != std::string::npos;
}

uint32_t seed_of(const std::string& s) {
  uint32_t h = 2166136261u;
  for (char ch : s) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  return h;
}

std::vector<cpu::Isa> isa_levels() {
  std::vector<cpu::Isa> levels;
  for (int i = static_cast<int>(cpu::detected_isa()); i >= 0; --i) levels.push_back(static_cast<cpu::Isa>(i));
  return levels;
}

// One backend of check mode: the cpu ops at one ISA level, or cuda.
struct BackendRun {
  Backend backend = Backend::Cpu;
  cpu::Isa isa = cpu::Isa::Scalar;  // Cpu
  std::string name;  // "avx512", "cuda"
  bool available = true;
  std::string why_not;  // when not available
  int passed = 0, failed = 0, skipped = 0;
};

std::vector<BackendRun> check_backends(const Options& opt) {
  std::vector<BackendRun> runs;
  if (opt.cpu)
    for (cpu::Isa isa : isa_levels()) {
      BackendRun r;
      r.backend = Backend::Cpu;
      r.isa = isa;
      r.name = cpu::isa_name(isa);
      runs.push_back(r);
    }
  if (opt.cuda) {
    BackendRun r;
    r.backend = Backend::Cuda;
    r.name = "cuda";
    r.available = cuda_backend::available(&r.why_not);
    runs.push_back(r);
  }
  return runs;
}

// Compares the case's outputs with the reference; why receives the failures.
bool compare(OpCase& c, double max_nmse, double& worst, std::string& why) {
  bool ok = true;
  worst = 0.0;
  for (const OutputCheck& o : c.outputs()) {
    if (!o.guards_intact) {
      ok = false;
      why += " " + o.name + ":guard-bytes-overwritten";
    }
    if (o.fast_int) {
      for (size_t i = 0; i < o.n; ++i)
        if (o.fast_int[i] != o.ref_int[i]) {
          ok = false;
          why += " " + o.name + "[" + std::to_string(i) + "]=" + std::to_string(o.fast_int[i]) +
                 "!=" + std::to_string(o.ref_int[i]);
          break;
        }
    } else {
      const double e = nmse(o.fast, o.ref, o.n);
      worst = std::isnan(e) ? e : std::max(worst, e);
      if (!(e <= max_nmse)) {
        ok = false;
        char buf[128];
        std::snprintf(buf, sizeof buf, " %s:nmse=%.3g>%.1g", o.name.c_str(), e, max_nmse);
        why += buf;
      }
    }
  }
  return ok;
}

int run_check(const Options& opt) {
  CaseList cases;
  add_matmul_cases(cases, false);
  add_ffn_cases(cases, false);
  add_attention_cases(cases, false);
  add_small_op_cases(cases, false);
  std::vector<BackendRun> runs = check_backends(opt);
  std::printf("ferry_ops --check: cpu %s; backends:", cpu_features().describe().c_str());
  for (const BackendRun& r : runs)
    std::printf(" %s%s", r.name.c_str(), r.available ? "" : (" (skipped: " + r.why_not + ")").c_str());
  std::printf("\n");
  for (auto& c : cases) {
    if (!matches(*c, opt.filter)) continue;
    if (opt.list) {
      std::printf("%s %s\n", c->op().c_str(), c->params().c_str());
      continue;
    }
    bool initialised = false;
    for (BackendRun& r : runs) {
      auto report = [&](const char* status, double worst, const std::string& why) {
        char nmse_col[32] = "";
        if (std::strcmp(status, "SKIPPED") != 0) std::snprintf(nmse_col, sizeof nmse_col, "nmse %-9.2e", worst);
        std::printf("  %-6s %-14s %-58s %-14s %s%s\n", r.name.c_str(), c->op().c_str(), c->params().c_str(), nmse_col,
                    status, why.c_str());
      };
      if (!r.available) {
        ++r.skipped;
        report("SKIPPED", 0.0, " (" + r.why_not + ")");
        continue;
      }
      if (!initialised) {
        std::mt19937 rng(seed_of(c->op() + c->params()));
        c->init(rng, true);
        initialised = true;
      }
      std::optional<cpu::ScopedIsaCap> cap;
      if (r.backend == Backend::Cpu) cap.emplace(r.isa);
      c->reset_outputs();
      bool ran = false;
      std::string why;
      try {
        ran = c->run_backend(r.backend);
      } catch (const std::exception& e) {
        ran = true;
        why = std::string(" error: ") + e.what();
      }
      if (!ran) {
        ++r.skipped;
        report("SKIPPED", 0.0, std::string(" (no ") + r.name + " implementation)");
        continue;
      }
      double worst = 0.0;
      const bool ok = compare(*c, c->max_nmse_on(r.backend), worst, why) && why.empty();
      ++(ok ? r.passed : r.failed);
      report(ok ? "OK" : "FAIL", worst, why);
    }
    c.reset();  // free the case's buffers
  }
  if (opt.list) return 0;
  int passed = 0, failed = 0, skipped = 0;
  std::printf("by backend:\n");
  for (const BackendRun& r : runs) {
    std::printf("  %-6s %d passed, %d failed, %d skipped%s\n", r.name.c_str(), r.passed, r.failed, r.skipped,
                r.available ? "" : (" (" + r.why_not + ")").c_str());
    passed += r.passed;
    failed += r.failed;
    skipped += r.skipped;
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed == 0 ? 0 : 1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double peak_of(const Roofline& r, Peak p) {
  switch (p) {
    case Peak::Bf16: return r.peak_gflops_bf16;
    case Peak::Int8: return r.peak_gops_int8;
    default: return r.peak_gflops_f32;
  }
}

const char* peak_name(Peak p) {
  switch (p) {
    case Peak::Bf16: return "bf16";
    case Peak::Int8: return "int8";
    default: return "f32";
  }
}

int run_perf(const Options& opt) {
  const bool targets_only = opt.mode == Options::Mode::Targets;
  std::printf("measuring the roofline...\n");
  const Roofline roof = probe_roofline();
  std::printf("roofline: %s\n", roof.describe().c_str());
  CaseList cases;
  add_matmul_cases(cases, true);
  add_ffn_cases(cases, true);
  add_attention_cases(cases, true);
  add_small_op_cases(cases, true);
  std::printf("\n%-14s %-46s %9s %9s %9s %8s %7s %7s %7s  %s\n", "op", "params", "ms(med)", "ms(best)", "GFLOP/s",
              "GB/s", "%BW", "%peak", "%roof", "target");
  std::printf("(rates and percentages from the median time)\n");
  std::map<std::string, std::map<std::string, double>> compare;  // key -> impl -> seconds
  std::vector<std::string> compare_order;
  int n_miss = 0;
  for (auto& c : cases) {
    if (!matches(*c, opt.filter)) continue;
    if (targets_only && c->target().what.empty() && c->comparison_key().empty()) continue;
    std::mt19937 rng(seed_of(c->op() + c->params()));
    c->init(rng, false);
    c->reset_outputs();
    c->run_fast();  // warm up
    std::vector<double> times;
    double total = 0.0;
    const int min_reps = opt.reps > 0 ? opt.reps : 5, max_reps = opt.reps > 0 ? opt.reps : 50;
    while (static_cast<int>(times.size()) < min_reps || (total < 1.5 && static_cast<int>(times.size()) < max_reps)) {
      c->reset_outputs();
      const auto t0 = std::chrono::steady_clock::now();
      c->run_fast();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      times.push_back(dt);
      total += dt;
    }
    bool guards = true;
    for (const OutputCheck& o : c->outputs()) guards &= o.guards_intact;
    const double t = median(times);
    const double gflops = c->flops() / t / 1e9, gbps = c->bytes() / t / 1e9;
    const double peak = peak_of(roof, c->peak());
    const double pct_bw = 100.0 * gbps / roof.dram_read_gbps;
    const double pct_peak = peak > 0 ? 100.0 * gflops / peak : 0.0;
    // Attainable = min(peak, intensity * bandwidth); cases whose data fits in cache can exceed 100%.
    const double attainable = peak > 0 ? std::min(peak, c->flops() / c->bytes() * roof.dram_read_gbps) : 0.0;
    const double pct_roof = attainable > 0 ? 100.0 * gflops / attainable : pct_bw;
    std::string target;
    const Target tg = c->target();
    if (!tg.what.empty()) {
      const double got = tg.of_bandwidth ? pct_bw : pct_peak;
      const bool met = got >= 100.0 * tg.fraction;
      n_miss += !met;
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s >= %.0f%% of %s: %s", tg.what.c_str(), 100 * tg.fraction,
                    tg.of_bandwidth ? "DRAM BW" : (std::string("peak ") + peak_name(c->peak())).c_str(),
                    met ? "met" : "MISSED");
      target = buf;
    }
    std::printf("%-14s %-46s %9.3f %9.3f %9.1f %8.1f %7.1f %7.1f %7.1f  %s%s\n", c->op().c_str(), c->params().c_str(),
                1e3 * t, 1e3 * *std::min_element(times.begin(), times.end()), gflops, gbps, pct_bw, pct_peak, pct_roof, target.c_str(), guards ? "" : " GUARD-BYTES-OVERWRITTEN");
    std::fflush(stdout);
    if (!c->comparison_key().empty()) {
      if (!compare.count(c->comparison_key())) compare_order.push_back(c->comparison_key());
      compare[c->comparison_key()][c->impl()] = t;
    }
    c.reset();
  }
  if (!compare.empty()) {
    std::printf("\n%-40s %10s %10s %14s\n", "ferry vs oneDNN", "ferry ms", "oneDNN ms", "oneDNN/ferry");
    for (const std::string& key : compare_order) {
      auto& impls = compare[key];
      if (!impls.count("ferry") || !impls.count("onednn")) continue;
      const double a = impls["ferry"], b = impls["onednn"];
      std::printf("%-40s %10.3f %10.3f %14.2f\n", key.c_str(), 1e3 * a, 1e3 * b, b / a);
    }
  }
  std::printf("\nroofline: %s\n", roof.describe().c_str());
  if (n_miss) std::printf("%d target(s) missed\n", n_miss);
  return 0;
}

}  // namespace
}  // namespace ferry::ops_test

int main(int argc, char** argv) {
  using ferry::ops_test::Options;
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ferry_ops: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--check") opt.mode = Options::Mode::Check;
    else if (a == "--perf") opt.mode = Options::Mode::Perf;
    else if (a == "--targets") opt.mode = Options::Mode::Targets;
    else if (a == "--filter") opt.filter = value("--filter");
    else if (a == "--reps") opt.reps = std::atoi(value("--reps").c_str());
    else if (a == "--threads") omp_set_num_threads(std::atoi(value("--threads").c_str()));
    else if (a == "--list") opt.list = true;
    else if (a == "--backend") {
      const std::string b = value("--backend");
      if (b != "cpu" && b != "cuda" && b != "all") {
        std::fprintf(stderr, "ferry_ops: --backend must be cpu, cuda or all, not '%s'\n", b.c_str());
        return 2;
      }
      opt.cpu = b != "cuda";
      opt.cuda = b != "cpu";
    } else {
      std::fprintf(stderr,
                   "usage: ferry_ops [--check [--backend cpu|cuda|all] | --perf | --targets] [--filter NAME] [--reps N] "
                   "[--threads N] [--list]\n");
      return 2;
    }
  }
  try {
    return opt.mode == Options::Mode::Check ? ferry::ops_test::run_check(opt) : ferry::ops_test::run_perf(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry_ops: %s\n", e.what());
    return 1;
  }
}
