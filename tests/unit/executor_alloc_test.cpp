// Steady-state decode allocates nothing: the global allocation operators are replaced in this test binary
// by counting versions, switched on only around the decode steps.
//
// Every replaceable form is replaced (plain, nothrow, aligned, aligned nothrow; sized and unsized delete;
// each also as an array form), all over malloc/aligned_alloc and free. Replacing only some forms mixes
// allocators: libstdc++'s std::stable_sort takes its temporary buffer from operator new(size, nothrow),
// which would then come from the sanitizer's (or libstdc++'s) operator new and be released through the
// replaced operator delete into free(), an alloc-dealloc mismatch under AddressSanitizer.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "ferry/checkpoint.h"
#include "ferry/device.h"
#include "ferry/exec/pipelined_model.h"
#include "test_util.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};

void count_allocation() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
void* counted_malloc(std::size_t n) noexcept {
  count_allocation();
  return std::malloc(n ? n : 1);
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t al) noexcept {
  count_allocation();
  std::size_t align = static_cast<std::size_t>(al);
  if (align < sizeof(void*)) align = sizeof(void*);
  std::size_t size = n ? n : 1;
  size = (size + align - 1) / align * align;  // aligned_alloc wants a multiple of the alignment
  return std::aligned_alloc(align, size);
}
void* throw_if_null(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

// Plain and nothrow.
void* operator new(std::size_t n) { return throw_if_null(counted_malloc(n)); }
void* operator new[](std::size_t n) { return throw_if_null(counted_malloc(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
// Over-aligned (alignas above __STDCPP_DEFAULT_NEW_ALIGNMENT__).
void* operator new(std::size_t n, std::align_val_t al) { return throw_if_null(counted_aligned_alloc(n, al)); }
void* operator new[](std::size_t n, std::align_val_t al) { return throw_if_null(counted_aligned_alloc(n, al)); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(n, al);
}
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

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
      p.kv_gpu_share = attention == planner::Device::Gpu ? 1 : 0;
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

// Every form goes through the counter, and memory from each form is released by its matching delete
// (under AddressSanitizer a form left unreplaced shows up here as an alloc-dealloc mismatch).
TEST(ExecutorAlloc, EveryAllocationFormIsCountedAndMatched) {
  struct alignas(64) Wide {
    float v[16];
  };
  g_allocations = 0;
  g_counting = true;
  void* plain_nothrow = ::operator new(24, std::nothrow);
  void* array_nothrow = ::operator new[](24, std::nothrow);
  Wide* aligned = new Wide;
  Wide* aligned_array = new Wide[3];
  void* aligned_nothrow = ::operator new(100, std::align_val_t{128}, std::nothrow);
  void* aligned_array_nothrow = ::operator new[](100, std::align_val_t{128}, std::nothrow);
  g_counting = false;
  EXPECT_EQ(g_allocations.load(), 6);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned_array) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned_nothrow) % 128, 0u);
  ::operator delete(plain_nothrow, std::nothrow);
  ::operator delete[](array_nothrow);
  delete aligned;
  delete[] aligned_array;
  ::operator delete(aligned_nothrow, std::align_val_t{128});
  ::operator delete[](aligned_array_nothrow, 100, std::align_val_t{128});

  // std::stable_sort's temporary buffer (operator new(size, nothrow), released by operator delete).
  std::vector<int> v(10000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = int((i * 7919) % 1000);
  std::stable_sort(v.begin(), v.end());
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
}

}  // namespace
}  // namespace ferry
