// Steady-state decode allocates nothing: global operator new is replaced in this test binary by a
// counting version, switched on only around the decode steps.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "test_util.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace ferry {
namespace {

TEST(ExecutorAlloc, SteadyStateDecodeAllocatesNothing) {
  auto ckpt = Checkpoint::open(test::oracle_dir("mixtral_fused"));
  const ModelConfig& c = ckpt->config();
  for (const char* target : {"sim:l4", "cpu"}) {
    for (planner::Device attention : {planner::Device::Cpu, planner::Device::Gpu}) {
      planner::Policy p;
      p.batch_size = 6;
      p.micro_batch = 2;
      p.attention_device = attention;
      for (int l = 0; l < c.n_layer; ++l) {
        p.gpu_experts_per_layer.push_back(c.n_expert / 2);
        p.dram_experts_per_layer.push_back(c.n_expert - c.n_expert / 2);
        p.ssd_experts_per_layer.push_back(0);
      }
      auto dev = create_device(target);
      PipelinedModel model(*ckpt, *dev, p);
      std::vector<int> seqs;
      std::vector<std::vector<int32_t>> prompts;
      std::vector<ForwardItem> items;
      for (int s = 0; s < 6; ++s) {
        seqs.push_back(model.add_sequence());
        prompts.push_back({1, 5 + s, 9, 17 + s});
      }
      for (int s = 0; s < 6; ++s) items.push_back({seqs[s], prompts[s], false});
      model.forward_view(items);
      std::vector<int32_t> next(6, 3);
      for (int s = 0; s < 6; ++s) items[s] = {seqs[s], std::span<const int32_t>(&next[s], 1), false};
      for (int step = 0; step < 3; ++step)
        model.forward_view(items);  // warm-up: ops' scratch reaches its size
      g_allocations = 0;
      g_counting = true;
      for (int step = 0; step < 8; ++step) {  // 8 more steps stay inside the KV blocks already taken
        std::span<const float> logits = model.forward_view(items);
        for (int s = 0; s < 6; ++s)
          next[s] = static_cast<int32_t>(logits[size_t(s) * c.n_vocab] > 0 ? 7 : 11);
      }
      g_counting = false;
      EXPECT_EQ(g_allocations.load(), 0) << target << " attention on " << planner::device_name(attention);
      EXPECT_EQ(model.sequence_length(seqs[0]), 4 + 3 + 8);
    }
  }
}

TEST(ExecutorAlloc, TheCounterSeesAllocations) {
  g_allocations = 0;
  g_counting = true;
  auto* v = new std::vector<int>(100);
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocations.load(), 2);
}

}  // namespace
}  // namespace ferry
