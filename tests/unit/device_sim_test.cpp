// The Device API on `cpu` and `sim:<profile>`: capacity, ordering checks, copy timing, overlap.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ferry/device.h"
#include "ferry/error.h"
#include "ferry/exec/trace.h"

namespace ferry {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(DeviceSim, CapacityComesFromTheProfileAndScale) {
  auto l4 = create_device("sim:l4");
  EXPECT_EQ(l4->info().capacity_bytes, static_cast<size_t>(24) << 30);
  auto small = create_device("sim:l4,scale=0.5,h2d=2");
  EXPECT_EQ(small->info().capacity_bytes, static_cast<size_t>(12) << 30);
  EXPECT_DOUBLE_EQ(small->info().h2d_gbps, 2.0);
  EXPECT_THROW(create_device("sim:l4,speed=3"), Error);
  EXPECT_THROW(create_device("sim:nonexistent-gpu"), Error);
  EXPECT_THROW(create_device("tpu"), Error);
}

TEST(DeviceSim, CapacityOverflowNamesTheBuffer) {
  auto dev = create_device("sim:l4,scale=1e-6");  // ~25.7 KB
  const size_t cap = dev->info().capacity_bytes;
  ASSERT_GT(cap, 20000u);
  dev->alloc("hidden", 16384);
  try {
    dev->alloc("expert ring", 16384);
    FAIL() << "expected a capacity error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'expert ring'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("16384 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(cap - 16384) + " bytes"), std::string::npos) << msg;
  }
  EXPECT_EQ(dev->used_bytes(), 16384u);
  // uploads land in the buffer, and staying inside it is checked
  std::vector<char> host(16384, 7);
  const BufferId staged = dev->alloc_host("staging", host.size());
  EXPECT_EQ(dev->used_bytes(), 16384u);  // pinned staging is host memory: not charged
  BufferId small = BufferId{};
  EXPECT_THROW(small = dev->alloc("too big", cap), Error);
  (void)staged;
  (void)small;
}

// A compute task reading a buffer whose H2D copy is not ordered before it by an event. The copy may still be
// running when the ordering error is thrown: `host` must outlive the device (the caller declares it first).
void misordered_read(Device& dev, const std::vector<float>& host) {
  BufferId buf = dev.alloc("weights page 3", host.size() * sizeof(float));
  dev.copy(StreamKind::H2D, {TaskKind::ExpertPage, 1, 3}, buf, BufferId{}, dev.data(buf), host.data(),
           host.size() * sizeof(float));
  const BufferAccess reads[] = {{buf, Access::Read}};
  dev.launch(StreamKind::Compute, {TaskKind::Experts, 1, 0}, reads, [] {});
}

TEST(DeviceSim, MisorderedReadIsDetected) {
  for (const char* target : {"sim:l4,h2d=0.001", "cpu"}) {
    const std::vector<float> host(1024, 1.0f);
    auto dev = create_device(target);
    try {
      misordered_read(*dev, host);
      FAIL() << target << ": expected an ordering error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'weights page 3'"), std::string::npos) << msg;
      EXPECT_NE(msg.find("expert-page layer 1 micro-batch 3"), std::string::npos) << msg;
      EXPECT_NE(msg.find("experts layer 1"), std::string::npos) << msg;
    }
    dev->synchronize();
  }
}

TEST(DeviceSim, OverwriteWhileStillReadIsDetected) {
  auto dev = create_device("sim:l4");
  BufferId ring = dev->alloc("ring slot 0", 4096);
  std::vector<char> host(4096);
  EventId loaded = dev->create_event();
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, ring, BufferId{}, dev->data(ring), host.data(), 4096);
  dev->record(loaded, StreamKind::H2D);
  dev->wait(StreamKind::Compute, loaded);
  const BufferAccess reads[] = {{ring, Access::Read}};
  dev->launch(StreamKind::Compute, {TaskKind::Experts, 0, 0}, reads, [] {});
  // The next layer's page into the same slot without waiting for the compute read: a ring hazard.
  EXPECT_THROW(
      dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 2, 0}, ring, BufferId{}, dev->data(ring), host.data(), 4096),
      Error);
  dev->synchronize();
}

TEST(DeviceSim, EventOrderedAccessRunsAfterTheCopy) {
  auto dev = create_device("sim:l4,h2d=0.1");  // 1 MB takes 10 ms
  const size_t n = 1 << 18;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(i);
  BufferId buf = dev->alloc("activations", n * sizeof(float));
  BufferId out = dev->alloc_host("result", sizeof(double));
  EventId copied = dev->create_event();
  dev->copy(StreamKind::H2D, {TaskKind::LoadHidden, 0, 0}, buf, BufferId{}, dev->data(buf), host.data(),
            n * sizeof(float));
  dev->record(copied, StreamKind::H2D);
  dev->wait(StreamKind::Compute, copied);
  struct Ctx {
    const float* src;
    double* sum;
    size_t n;
  } ctx{static_cast<const float*>(dev->data(buf)), static_cast<double*>(dev->data(out)), n};
  const BufferAccess access[] = {{buf, Access::Read}, {out, Access::Write}};
  dev->launch(StreamKind::Compute, {TaskKind::Experts, 0, 0}, access, [c = &ctx] {
    double s = 0;
    for (size_t i = 0; i < c->n; ++i) s += c->src[i];
    *c->sum = s;
  });
  dev->synchronize();
  EXPECT_DOUBLE_EQ(*static_cast<double*>(dev->data(out)), static_cast<double>(n) * (n - 1) / 2);
}

TEST(DeviceSim, CopiesTakeBytesOverBandwidth) {
  auto dev = create_device("sim:l4,h2d=0.05,d2h=0.05");  // 50 MB/s
  const size_t bytes = 2'000'000;                        // 40 ms
  std::vector<char> host(bytes, 7);
  BufferId buf = dev->alloc("page", bytes);
  const auto t0 = std::chrono::steady_clock::now();
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, buf, BufferId{}, dev->data(buf), host.data(), bytes);
  dev->synchronize();
  const double t = seconds_since(t0);
  EXPECT_GE(t, 0.040);
  EXPECT_LT(t, 0.040 * 1.5 + 0.01);
  EXPECT_EQ(static_cast<char*>(dev->data(buf))[bytes - 1], 7);
}

TEST(DeviceSim, H2DAndD2HOverlapEachOtherAndCompute) {
  auto dev = create_device("sim:l4,h2d=0.05,d2h=0.05");
  Trace trace;
  dev->set_trace(&trace);
  const size_t bytes = 2'000'000;  // 40 ms per copy
  std::vector<char> a(bytes), b(bytes);
  BufferId in = dev->alloc("in", bytes), outb = dev->alloc("out", bytes), work = dev->alloc("work", 64);
  const BufferAccess access[] = {{work, Access::Write}};
  trace.restart();
  const auto t0 = std::chrono::steady_clock::now();
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, in, BufferId{}, dev->data(in), a.data(), bytes);
  dev->copy(StreamKind::D2H, {TaskKind::OffloadQkv, 0, 0}, BufferId{}, outb, b.data(), dev->data(outb), bytes);
  dev->launch(StreamKind::Compute, {TaskKind::Experts, 0, 0}, access,
              [] { std::this_thread::sleep_for(std::chrono::milliseconds(40)); });
  dev->synchronize();
  const double t = seconds_since(t0);
  // serial would take 120 ms and score 0.33; the margins absorb a loaded 2-core machine
  EXPECT_LT(t, 0.100) << "three 40 ms tasks on three streams should overlap";
  const TraceMetrics m = trace_metrics(trace);
  EXPECT_EQ(m.bytes[static_cast<int>(StreamKind::H2D)], bytes);
  EXPECT_EQ(m.bytes[static_cast<int>(StreamKind::D2H)], bytes);
  EXPECT_GT(m.busy_seconds[static_cast<int>(StreamKind::Compute)], 0.039);
  EXPECT_GT(m.overlap_efficiency, 0.6);
}

// counters(): what each stream did, for the end-of-run metrics (no trace needed). Waiting on an event
// is not busy time: the compute stream waits 40 ms for the copy but runs for 10.
TEST(DeviceSim, CountersReportBusyTimeAndBytesPerStream) {
  for (const char* target : {"sim:l4,h2d=0.05", "cpu"}) {
    auto dev = create_device(target);
    const size_t bytes = 2'000'000;  // 40 ms at 50 MB/s on sim; a memcpy on cpu
    std::vector<char> host(bytes);
    BufferId buf = dev->alloc("page", bytes);
    const EventId copied = dev->create_event();
    dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, buf, BufferId{}, dev->data(buf), host.data(), bytes);
    dev->record(copied, StreamKind::H2D);
    dev->wait(StreamKind::Compute, copied);
    const BufferAccess reads[] = {{buf, Access::Read}};
    dev->launch(StreamKind::Compute, {TaskKind::Experts, 0, 0}, reads,
                [] { std::this_thread::sleep_for(std::chrono::milliseconds(10)); });
    dev->synchronize();
    const DeviceCounters c = dev->counters();
    const bool sim = std::string(target) != "cpu";
    EXPECT_EQ(c.bytes[static_cast<int>(StreamKind::H2D)], bytes) << target;
    EXPECT_EQ(c.bytes[static_cast<int>(StreamKind::D2H)], 0u) << target;
    if (sim) {
      EXPECT_GE(c.busy_seconds[static_cast<int>(StreamKind::H2D)], 0.040) << target;
    }
    EXPECT_GE(c.busy_seconds[static_cast<int>(StreamKind::Compute)], 0.010) << target;
    EXPECT_LT(c.busy_seconds[static_cast<int>(StreamKind::Compute)], 0.035) << target;
    EXPECT_EQ(c.busy_seconds[static_cast<int>(StreamKind::Host)], 0.0) << target;
  }
}

TEST(DeviceSim, SameStreamCopiesAreSerialised) {
  auto dev = create_device("sim:l4,h2d=0.05");
  const size_t bytes = 1'000'000;  // 20 ms each
  std::vector<char> a(bytes);
  BufferId x = dev->alloc("x", bytes), y = dev->alloc("y", bytes);
  const auto t0 = std::chrono::steady_clock::now();
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, x, BufferId{}, dev->data(x), a.data(), bytes);
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 1}, y, BufferId{}, dev->data(y), a.data(), bytes);
  dev->synchronize();
  EXPECT_GE(seconds_since(t0), 0.040);
}

TEST(DeviceSim, WaitBlocksTheStreamUntilTheEvent) {
  auto dev = create_device("sim:l4,h2d=0.05");
  const size_t bytes = 1'000'000;  // 20 ms
  std::vector<char> a(bytes);
  BufferId x = dev->alloc("x", bytes);
  BufferId flag = dev->alloc_host("flag", 8);
  EventId e = dev->create_event();
  dev->copy(StreamKind::H2D, {TaskKind::ExpertPage, 0, 0}, x, BufferId{}, dev->data(x), a.data(), bytes);
  dev->record(e, StreamKind::H2D);
  dev->wait(StreamKind::Compute, e);
  struct Ctx {
    Device* dev;
    EventId e;
    volatile int* flag;
  } ctx{dev.get(), e, static_cast<volatile int*>(dev->data(flag))};
  *ctx.flag = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const BufferAccess access[] = {{x, Access::Read}, {flag, Access::Write}};
  dev->launch(StreamKind::Compute, {TaskKind::Experts, 0, 0}, access, [c = &ctx] { *c->flag = 1; });
  dev->synchronize();
  EXPECT_GE(seconds_since(t0), 0.015);
  EXPECT_EQ(*ctx.flag, 1);
}

TEST(DeviceSim, WorkerErrorsSurfaceAtSynchronize) {
  auto dev = create_device("sim:l4");
  dev->launch(StreamKind::Host, {TaskKind::Attention, 0, 0}, {}, [] { throw Error("boom"); });
  EXPECT_THROW(dev->synchronize(), Error);
}

}  // namespace
}  // namespace ferry
